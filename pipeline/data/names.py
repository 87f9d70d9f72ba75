"""The names of the datasets (and their groups) and augmentations, importable without torch.

``tailbank check`` validates ``data.dataset`` and ``train.augment`` against these tuples; the
loaders (`pipeline.data.sources`, `pipeline.data.transforms`) build what they name, and a test
checks that the two agree.
"""

from __future__ import annotations

DATASETS: tuple[str, ...] = (
    "digits_lt",
    "mnist_lt",
    "fashion_mnist_lt",
    "cifar10_lt",
    "cifar100_lt",
    "imagenet_lt",
    "places_lt",
    "inat2018",
    "image_folder",
    "image_list",
)

# The user's own images (`pipeline.data.image_folder`, `pipeline.data.image_list`): classes and
# counts come from the files, and the training images are taken as they are.
USER_DATASETS: tuple[str, ...] = ("image_folder", "image_list")

# Datasets read from image files batch by batch; ``data.image_size`` applies to these only
# (the others are held in memory at their native size).
FILE_DATASETS: tuple[str, ...] = ("imagenet_lt", "places_lt", "inat2018", *USER_DATASETS)

# Where the balanced val split of a profiled train pool comes from (``data.val_from``):
# "train" holds val out of the train pool before the profile is drawn; "left_out" draws the
# profile over the whole train pool (the papers' CIFAR-LT train set) and val from the images
# the profile left out.
VAL_SOURCES: tuple[str, ...] = ("train", "left_out")

# The datasets a profile is drawn from a train pool of, where "left_out" applies.
PROFILED_TRAIN_POOL_DATASETS: tuple[str, ...] = (
    "mnist_lt",
    "fashion_mnist_lt",
    "cifar10_lt",
    "cifar100_lt",
)

# torchvision's per-image policies (`pipeline.data.augmentations`).
POLICY_AUGMENTATIONS: tuple[str, ...] = ("autoaugment", "randaugment", "simclr")

AUGMENTATIONS: tuple[str, ...] = ("none", "crop", "crop_flip", *POLICY_AUGMENTATIONS)
