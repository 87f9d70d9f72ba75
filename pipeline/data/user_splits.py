"""The splits of the user's own datasets (``image_folder``, ``image_list``).

A user's data is long-tailed already (that is why they use this tool), so the training images
are taken as they are: no profile re-samples them and ``data.imbalance_factor`` does not apply,
as for ImageNet-LT and Places-LT. A split the user gave (a val or test folder / list) is that
pool whole; a split they did not give is carved out of the training images, balanced:
``test_per_class`` then ``val_per_class`` images of every class, as for ``digits_lt``. Every
class must keep at least one training image.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.splits import SplitPart, Splits
from pipeline.errors import PipelineError

# Where the user names a split's own images, per dataset (named in error messages).
SPLIT_KEYS: dict[str, str] = {"image_folder": "data.folders", "image_list": "data.lists"}


def user_splits(
    source: DatasetSource, *, val_per_class: int, test_per_class: int, seed: int
) -> Splits:
    """Split a user dataset: its own val / test pools, or balanced ones carved from train.

    Args:
        source: an ``image_folder`` or ``image_list`` source.
        val_per_class: val images carved per class when there is no val pool.
        test_per_class: test images carved per class when there is no test pool.
        seed: seed of numpy's ``default_rng`` that shuffles each class before carving.

    Returns:
        The splits; train's class counts are those of the images left in the train pool.

    Raises:
        PipelineError: a per-class number below 1, or a class with too few training images
            for what is carved out of it.
    """
    carved = {
        split: per_class
        for split, per_class in (("test", test_per_class), ("val", val_per_class))
        if split not in source.pools
    }
    for split, per_class in carved.items():
        if per_class < 1:
            raise PipelineError(f"data.{split}_per_class is {per_class}: it must be at least 1")
    labels = source.pools["train"].labels
    rng = np.random.default_rng(seed)
    # Class by class, so one seed fixes every class's draw.
    members = [
        rng.permutation(np.flatnonzero(labels == label)) for label in range(source.num_classes)
    ]
    _require_class_sizes(source, members, carved)
    parts, train = _carve(members, carved)
    for split in ("val", "test"):
        if split not in carved:
            parts[split] = SplitPart(split, np.arange(len(source.pools[split]), dtype=np.int64))
    counts = np.bincount(labels[train], minlength=source.num_classes).astype(np.int64)
    return Splits(
        dataset=source.name,
        num_classes=source.num_classes,
        train=SplitPart("train", train),
        class_counts=counts,
        **parts,
    )


def _carve(
    members: list[np.ndarray], carved: dict[str, int]
) -> tuple[dict[str, SplitPart], np.ndarray]:
    """Take each carved split's share of every class's shuffle in turn; the rest trains."""
    parts, start = {}, 0
    for split, per_class in carved.items():
        taken = [positions[start : start + per_class] for positions in members]
        parts[split] = SplitPart("train", _sorted_union(taken))
        start += per_class
    return parts, _sorted_union([positions[start:] for positions in members])


def _sorted_union(groups: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(groups)).astype(np.int64)


def _require_class_sizes(
    source: DatasetSource, members: list[np.ndarray], carved: dict[str, int]
) -> None:
    needed = sum(carved.values()) + 1
    for label, positions in enumerate(members):
        if len(positions) < needed:
            asked = " + ".join(f"data.{split}_per_class={n}" for split, n in carved.items())
            own = " or ".join(f"{SPLIT_KEYS[source.name]}.{split}" for split in carved)
            raise PipelineError(
                f"class {source.class_label(label)} of {source.name} has {len(positions)} "
                f"training images, but {asked} carved out of it leave none to train on: lower "
                f"{' or '.join(f'data.{split}_per_class' for split in carved)}, add images, or "
                f"give the split images of its own ({own})"
            )
