"""The names of the datasets and augmentations, importable without torch or torchvision.

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
)

# torchvision's per-image policies (`pipeline.data.augmentations`).
POLICY_AUGMENTATIONS: tuple[str, ...] = ("autoaugment", "randaugment", "simclr")

AUGMENTATIONS: tuple[str, ...] = ("none", "crop", "crop_flip", *POLICY_AUGMENTATIONS)
