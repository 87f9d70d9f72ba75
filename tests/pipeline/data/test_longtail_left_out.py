"""``val_from: left_out``: the papers' CIFAR-LT train set, val from the images it left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.longtail import make_splits
from pipeline.data.sources import load_source
from pipeline.data.splits import Splits
from pipeline.errors import PipelineError
from tests.pipeline.data.standins import synthetic_source, write_cifar_standin

IMBALANCE_FACTOR = 5.0


def ldam_train_indices(targets: np.ndarray, imbalance_factor: float, seed: int) -> np.ndarray:
    """The long-tailed CIFAR train set as the official LDAM-DRW code draws it, written from its
    behaviour: numpy's global generator seeded with ``seed``; for each class in increasing
    order, its image positions shuffled in place and the first n_c kept, with
    n_c = int(n_max * IF^(-c / (C - 1))) and n_max the mean images per class."""
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        labels = np.asarray(targets, dtype=np.int64)
        classes = np.unique(labels)
        per_class = len(labels) / len(classes)
        kept = []
        for rank, label in enumerate(classes):
            count = int(per_class * (1 / imbalance_factor) ** (rank / (len(classes) - 1.0)))
            positions = np.flatnonzero(labels == label)
            np.random.shuffle(positions)
            kept.append(positions[:count])
        return np.sort(np.concatenate(kept))
    finally:
        np.random.set_state(saved)


@pytest.fixture
def cifar_source(tmp_path: Path) -> DatasetSource:
    """A CIFAR-10 stand-in: 30 training images per class, 10 test images per class."""
    write_cifar_standin(tmp_path, hundred=False, batch_size=60)
    return load_source("cifar10_lt", tmp_path)


def _left_out(source: DatasetSource, seed: int = 0, **overrides: object) -> Splits:
    arguments = {
        "imbalance_factor": IMBALANCE_FACTOR,
        "val_per_class": 3,
        "test_per_class": 40,
        "max_per_class": None,
        "seed": seed,
        "val_from": "left_out",
        **overrides,
    }
    return make_splits(source, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 7])
def test_train_is_the_official_ldam_draw(cifar_source: DatasetSource, seed: int) -> None:
    splits = _left_out(cifar_source, seed)
    targets = cifar_source.pools["train"].labels
    expected = ldam_train_indices(targets, IMBALANCE_FACTOR, seed)
    assert splits.train.pool == "train"
    assert splits.train.indices.tolist() == expected.tolist()
    official = [int(30 * (1 / IMBALANCE_FACTOR) ** (i / 9)) for i in range(10)]
    assert splits.class_counts.tolist() == official


def test_val_comes_from_what_the_profile_left_out(cifar_source: DatasetSource) -> None:
    splits = _left_out(cifar_source)
    assert splits.val.pool == "train"
    assert len(np.intersect1d(splits.train.indices, splits.val.indices)) == 0
    # the head class is kept whole, so it has nothing left out to give
    per_class = np.bincount(splits.val.labels(cifar_source), minlength=10)
    assert per_class.tolist() == [0] + [3] * 9
    assert splits.test.pool == "test" and len(splits.test) == len(cifar_source.pools["test"])


def test_max_per_class_leaves_the_head_images_for_val(cifar_source: DatasetSource) -> None:
    splits = _left_out(cifar_source, max_per_class=27)
    assert np.bincount(splits.val.labels(cifar_source)).tolist() == [3] * 10
    assert splits.class_counts[0] == 27


def test_the_default_still_holds_val_out_before_the_profile(cifar_source: DatasetSource) -> None:
    arguments = {
        "imbalance_factor": IMBALANCE_FACTOR,
        "val_per_class": 3,
        "test_per_class": 40,
        "max_per_class": None,
        "seed": 0,
    }
    default = make_splits(cifar_source, **arguments)  # type: ignore[arg-type]
    assert make_splits(cifar_source, **arguments, val_from="train").to_dict() == default.to_dict()
    assert default.class_counts[0] == 27  # n_max: what is left after val
    assert default.to_dict() != _left_out(cifar_source).to_dict()


def test_left_out_applies_to_torchvision_datasets_only() -> None:
    source = synthetic_source("digits_lt", {"all": 200}, num_classes=4)
    with pytest.raises(PipelineError, match="data.val_from: 'left_out' applies to a profile"):
        _left_out(source)


def test_unknown_val_from_names_the_choices(cifar_source: DatasetSource) -> None:
    with pytest.raises(PipelineError, match="data.val_from is 'test': it must be one of train"):
        _left_out(cifar_source, val_from="test")
