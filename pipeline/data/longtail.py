"""The long-tail profile and the train/val/test splits of each dataset (shot groups: `core.shots`).

Model selection only ever looks at val, so val and test never share an image, and val is
balanced (the same number of images per class) wherever the dataset lets us choose it.
"""

from __future__ import annotations

import math

import numpy as np

from core.splits import SPLITS
from pipeline.data.dataset_source import DatasetSource
from pipeline.data.names import USER_DATASETS, VAL_SOURCES
from pipeline.data.splits import SplitPart, Splits
from pipeline.data.torchvision_sources import TORCHVISION_DATASETS
from pipeline.data.user_splits import user_splits
from pipeline.errors import PipelineError

# How each dataset's splits are made (see make_splits).
PROFILED_FROM_ONE_POOL: tuple[str, ...] = ("digits_lt",)
PROFILED_FROM_TRAIN_POOL: tuple[str, ...] = TORCHVISION_DATASETS
ALREADY_LONG_TAILED: tuple[str, ...] = ("imagenet_lt", "places_lt")
VAL_CARVED_FROM_TRAIN: tuple[str, ...] = ("inat2018",)

# Guards the floor in the profile against 49.999999 where the exact value is 50.
PROFILE_ROUNDING_SLACK = 1e-9

def exponential_profile(n_max: int, num_classes: int, imbalance_factor: float) -> np.ndarray:
    """Images per class of an exponentially long-tailed set (Cao et al. 2019, LDAM).

    ``n_i = floor(n_max * IF^(-i / (C - 1)))``: class 0 is the head with ``n_max`` images,
    class C-1 the tail with about ``n_max / IF``.

    Args:
        n_max: images of the head class.
        num_classes: C.
        imbalance_factor: IF = n_0 / n_{C-1}, at least 1.

    Returns:
        int64 [C], non-increasing.

    Raises:
        PipelineError: ``imbalance_factor`` below 1 or not finite, ``n_max`` below 1, or a
            tail class that the profile would leave without a single image.
    """
    _check_imbalance_factor(imbalance_factor)
    _require_positive("data.max_per_class", n_max)
    if num_classes == 1:
        return np.array([n_max], dtype=np.int64)
    exponents = -np.arange(num_classes, dtype=np.float64) / (num_classes - 1)
    counts = np.floor(n_max * imbalance_factor**exponents + PROFILE_ROUNDING_SLACK)
    empty = np.flatnonzero(counts < 1)
    if len(empty):
        # Clamping to one image would silently train on another imbalance factor.
        raise PipelineError(
            f"data.imbalance_factor {imbalance_factor:g} with {n_max} images in the head class "
            f"leaves {len(empty)} tail classes (from class {empty[0]}) with no training image; "
            f"lower data.imbalance_factor to at most {n_max} or raise data.max_per_class"
        )
    return counts.astype(np.int64)


def make_splits(
    source: DatasetSource,
    *,
    imbalance_factor: float,
    val_per_class: int,
    test_per_class: int,
    max_per_class: int | None,
    seed: int,
    val_from: str = "train",
) -> Splits:
    """Split a dataset into a long-tailed train, a balanced val and a test split.

    - digits (one pool): per class, hold out ``test_per_class`` for test, then
      ``val_per_class`` for val; train takes the profile's share of the rest.
    - torchvision datasets: test is the official test pool. With ``val_from`` "train",
      ``val_per_class`` per class are held out of the train pool and train takes the profile's
      share of the rest. With "left_out", train is the papers' set (the profile over the whole
      train pool, see :func:`_profile_whole_train_pool`) and val comes from what it left out.
    - ImageNet-LT, Places-LT: their lists are long-tailed already; each split is its pool.
    - iNaturalist 2018: test is the official val pool; val holds ``min(val_per_class, n_c - 1)``
      images of each class of the train pool, so no class loses all its training images.
    - ``image_folder``, ``image_list``: train as the user gave it, no profile; see
      :func:`pipeline.data.user_splits.user_splits`.

    The profile's ``n_max`` is ``max_per_class``, or the smallest number of candidates a class
    has left. Indices are sorted within each split.

    Args:
        source: the dataset.
        imbalance_factor: IF of :func:`exponential_profile`.
        val_per_class: val images held out per class.
        test_per_class: test images held out per class (datasets without a test pool).
        max_per_class: training images of the head class, or ``None`` for the most possible.
        seed: seed that shuffles each class.
        val_from: one of :data:`pipeline.data.names.VAL_SOURCES` (torchvision datasets).

    Returns:
        The splits.

    Raises:
        PipelineError: an invalid argument, or a class too small for what is asked of it.
    """
    _check_imbalance_factor(imbalance_factor)
    _require_positive("data.max_per_class", max_per_class)
    _check_val_from(source, val_from)
    rng = np.random.default_rng(seed)
    if source.name in PROFILED_FROM_ONE_POOL:
        return _profile_one_pool(
            source, imbalance_factor, val_per_class, test_per_class, max_per_class, rng
        )
    if source.name in PROFILED_FROM_TRAIN_POOL and val_from == "left_out":
        return _profile_whole_train_pool(
            source, imbalance_factor, val_per_class, max_per_class, seed
        )
    if source.name in PROFILED_FROM_TRAIN_POOL:
        return _profile_train_pool(source, imbalance_factor, val_per_class, max_per_class, rng)
    if source.name in ALREADY_LONG_TAILED:
        return _whole_pools(source)
    if source.name in VAL_CARVED_FROM_TRAIN:
        return _carve_val_from_train(source, val_per_class, rng)
    if source.name in USER_DATASETS:
        return user_splits(
            source, val_per_class=val_per_class, test_per_class=test_per_class, seed=seed
        )
    raise PipelineError(f"data.dataset: no split recipe for dataset '{source.name}'")


def _check_imbalance_factor(imbalance_factor: float) -> None:
    if not (math.isfinite(imbalance_factor) and imbalance_factor >= 1):
        raise PipelineError(
            f"data.imbalance_factor is {imbalance_factor}: it must be a finite number >= 1 "
            "(1 = balanced, 100 = head class 100x the tail class)"
        )


def _check_val_from(source: DatasetSource, val_from: str) -> None:
    if val_from not in VAL_SOURCES:
        raise PipelineError(
            f"data.val_from is '{val_from}': it must be one of {', '.join(VAL_SOURCES)}"
        )
    if val_from == "left_out" and source.name not in PROFILED_FROM_TRAIN_POOL:
        raise PipelineError(
            f"data.val_from: 'left_out' applies to a profile drawn from a train pool "
            f"({', '.join(PROFILED_FROM_TRAIN_POOL)}), not to {source.name}; remove the key"
        )


def _require_positive(key: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise PipelineError(f"{key} is {value}: it must be at least 1")


def _shuffled_members(
    labels: np.ndarray, num_classes: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Positions of each class's images, shuffled; class by class so one seed fixes all."""
    return [rng.permutation(np.flatnonzero(labels == label)) for label in range(num_classes)]


def _require_class_sizes(
    source: DatasetSource, members: list[np.ndarray], pool: str, held_out: dict[str, int]
) -> None:
    needed = sum(held_out.values()) + 1
    for label, positions in enumerate(members):
        if len(positions) < needed:
            asked = " + ".join(f"{key}={value}" for key, value in held_out.items())
            raise PipelineError(
                f"class {source.class_label(label)} has {len(positions)} images in pool "
                f"'{pool}' of {source.name}, but {asked} leave none to train on: lower "
                f"{' or '.join(held_out)}"
            )


def _take_profile(
    source: DatasetSource,
    candidates: list[np.ndarray],
    imbalance_factor: float,
    max_per_class: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Take the first ``n_i`` of each class's shuffled candidates; returns (positions, n)."""
    n_max = max_per_class if max_per_class is not None else min(map(len, candidates))
    counts = exponential_profile(n_max, source.num_classes, imbalance_factor)
    for label, (wanted, available) in enumerate(zip(counts, candidates, strict=True)):
        if wanted > len(available):
            raise PipelineError(
                f"data.max_per_class={max_per_class} asks class {source.class_label(label)} "
                f"for {wanted} training images but it has only {len(available)} to draw them from: "
                "lower data.max_per_class or set it to null"
            )
    taken = [positions[:wanted] for positions, wanted in zip(candidates, counts, strict=True)]
    return _sorted_union(taken), counts


def _sorted_union(groups: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(groups)).astype(np.int64)


def _profile_one_pool(
    source: DatasetSource,
    imbalance_factor: float,
    val_per_class: int,
    test_per_class: int,
    max_per_class: int | None,
    rng: np.random.Generator,
) -> Splits:
    _require_positive("data.test_per_class", test_per_class)
    _require_positive("data.val_per_class", val_per_class)
    members = _shuffled_members(source.pools["all"].labels, source.num_classes, rng)
    _require_class_sizes(
        source,
        members,
        "all",
        {"data.test_per_class": test_per_class, "data.val_per_class": val_per_class},
    )
    held_out = test_per_class + val_per_class
    test = _sorted_union([positions[:test_per_class] for positions in members])
    val = _sorted_union([positions[test_per_class:held_out] for positions in members])
    candidates = [positions[held_out:] for positions in members]
    train, counts = _take_profile(source, candidates, imbalance_factor, max_per_class)
    return Splits(
        dataset=source.name,
        num_classes=source.num_classes,
        train=SplitPart("all", train),
        val=SplitPart("all", val),
        test=SplitPart("all", test),
        class_counts=counts,
    )


def _profile_train_pool(
    source: DatasetSource,
    imbalance_factor: float,
    val_per_class: int,
    max_per_class: int | None,
    rng: np.random.Generator,
) -> Splits:
    _require_positive("data.val_per_class", val_per_class)
    members = _shuffled_members(source.pools["train"].labels, source.num_classes, rng)
    _require_class_sizes(source, members, "train", {"data.val_per_class": val_per_class})
    val = _sorted_union([positions[:val_per_class] for positions in members])
    candidates = [positions[val_per_class:] for positions in members]
    train, counts = _take_profile(source, candidates, imbalance_factor, max_per_class)
    return Splits(
        dataset=source.name,
        num_classes=source.num_classes,
        train=SplitPart("train", train),
        val=SplitPart("train", val),
        test=SplitPart("test", np.arange(len(source.pools["test"]), dtype=np.int64)),
        class_counts=counts,
    )


def _profile_whole_train_pool(
    source: DatasetSource,
    imbalance_factor: float,
    val_per_class: int,
    max_per_class: int | None,
    seed: int,
) -> Splits:
    """The papers' long-tailed train set; val from the images the profile left out.

    Train is drawn as the official LDAM code draws CIFAR-LT (``IMBALANCECIFAR10``): numpy's
    legacy generator seeded with ``seed`` shuffles each class's positions in class order and
    the first ``n_i`` are kept, with ``n_max`` the whole class. So ``seed`` 0 gives the very
    images of the LDAM code's default ``rand_number=0`` (class counts are equal as well). Val
    takes the next ``val_per_class`` of each class's shuffle, never a test image. A class the
    profile keeps whole has nothing left out: it gets fewer val images, or none (the head
    class, unless ``max_per_class`` is below its size); per-class val metrics skip it.
    """
    _require_positive("data.val_per_class", val_per_class)
    labels = source.pools["train"].labels
    legacy = np.random.RandomState(seed)
    members = []
    for label in range(source.num_classes):
        positions = np.flatnonzero(labels == label)
        legacy.shuffle(positions)
        members.append(positions)
    empty = [label for label, positions in enumerate(members) if len(positions) == 0]
    if empty:
        raise PipelineError(
            f"class {source.class_label(empty[0])} has no images in pool 'train' of "
            f"{source.name}: replace the dataset's files, or delete them and set "
            "data.download: true"
        )
    train, counts = _take_profile(source, members, imbalance_factor, max_per_class)
    left_out = [positions[kept:] for positions, kept in zip(members, counts, strict=True)]
    val = _sorted_union([positions[:val_per_class] for positions in left_out])
    return Splits(
        dataset=source.name,
        num_classes=source.num_classes,
        train=SplitPart("train", train),
        val=SplitPart("train", val),
        test=SplitPart("test", np.arange(len(source.pools["test"]), dtype=np.int64)),
        class_counts=counts,
    )


def _whole_pools(source: DatasetSource) -> Splits:
    parts = {
        split: SplitPart(split, np.arange(len(source.pools[split]), dtype=np.int64))
        for split in SPLITS
    }
    counts = np.bincount(source.pools["train"].labels, minlength=source.num_classes)
    _require_training_images(source, counts)
    return Splits(
        dataset=source.name,
        num_classes=source.num_classes,
        class_counts=counts.astype(np.int64),
        **parts,
    )


def _carve_val_from_train(
    source: DatasetSource, val_per_class: int, rng: np.random.Generator
) -> Splits:
    _require_positive("data.val_per_class", val_per_class)
    labels = source.pools["train"].labels
    _require_training_images(source, np.bincount(labels, minlength=source.num_classes))
    members = _shuffled_members(labels, source.num_classes, rng)
    val_sizes = [min(val_per_class, len(positions) - 1) for positions in members]
    val = _sorted_union(
        [positions[:size] for positions, size in zip(members, val_sizes, strict=True)]
    )
    train = _sorted_union(
        [positions[size:] for positions, size in zip(members, val_sizes, strict=True)]
    )
    counts = np.bincount(labels[train], minlength=source.num_classes).astype(np.int64)
    return Splits(
        dataset=source.name,
        num_classes=source.num_classes,
        train=SplitPart("train", train),
        val=SplitPart("train", val),
        test=SplitPart("test", np.arange(len(source.pools["test"]), dtype=np.int64)),
        class_counts=counts,
    )


def _require_training_images(source: DatasetSource, counts: np.ndarray) -> None:
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise PipelineError(
            f"class {source.class_label(int(empty[0]))} has no images in the training list of "
            f"{source.name} ({len(empty)} classes have none): point data.lists.train at the "
            "full official list"
        )
