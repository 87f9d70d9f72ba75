"""The exponential profile, make_splits for every recipe, and shot groups."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.data.longtail import (
    PROFILE_ROUNDING_SLACK,
    exponential_profile,
    make_splits,
)
from pipeline.data.splits import SPLIT_NAMES, Splits
from pipeline.errors import PipelineError
from tests.pipeline.data.standins import synthetic_source

DIGITS_DEFAULTS = {
    "imbalance_factor": 20.0,
    "val_per_class": 10,
    "test_per_class": 40,
    "max_per_class": None,
}


def test_profile_matches_cifar10_lt_of_cao_et_al() -> None:
    expected = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    np.testing.assert_array_equal(exponential_profile(5000, 10, 100), expected)


def test_profile_tail_of_cifar100_lt_is_exact_despite_rounding() -> None:
    assert exponential_profile(500, 100, 100)[-1] == 5


@settings(max_examples=60, deadline=None)
@given(
    n_max=st.integers(1, 10_000),
    num_classes=st.integers(2, 200),
    imbalance_factor=st.floats(1, 1000),
)
def test_profile_is_a_nonincreasing_floor_of_the_formula(
    n_max: int, num_classes: int, imbalance_factor: float
) -> None:
    exact = n_max * imbalance_factor ** (-np.arange(num_classes) / (num_classes - 1))
    if np.floor(exact[-1] + PROFILE_ROUNDING_SLACK) < 1:
        with pytest.raises(PipelineError, match="no training image"):
            exponential_profile(n_max, num_classes, imbalance_factor)
        return
    counts = exponential_profile(n_max, num_classes, imbalance_factor)
    assert counts.dtype == np.int64 and counts[0] == n_max
    assert np.all(np.diff(counts) <= 0) and np.all(counts >= 1)
    assert np.all(np.abs(counts - np.floor(exact)) <= 1)


def test_balanced_profile_for_imbalance_factor_one() -> None:
    np.testing.assert_array_equal(exponential_profile(7, 4, 1.0), [7, 7, 7, 7])


@pytest.mark.parametrize("imbalance_factor", [0.5, float("nan")])
def test_imbalance_factor_below_one_is_rejected(imbalance_factor: float) -> None:
    with pytest.raises(PipelineError, match=r"data\.imbalance_factor"):
        exponential_profile(10, 5, imbalance_factor)


def _assert_disjoint_and_sorted(splits: Splits) -> None:
    for split in SPLIT_NAMES:
        indices = splits.part(split).indices
        assert indices.dtype == np.int64 and np.all(np.diff(indices) > 0)
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        if splits.part(first).pool == splits.part(second).pool:
            shared = np.intersect1d(splits.part(first).indices, splits.part(second).indices)
            assert len(shared) == 0


def test_digits_defaults_give_every_class_images_and_class_zero_the_most(
    digits_source: DatasetSource,
) -> None:
    splits = make_splits(digits_source, seed=0, **DIGITS_DEFAULTS)
    counts = splits.class_counts
    assert np.all(counts > 0) and counts[0] == counts.max() and counts[0] > counts[-1]
    assert counts[0] / counts[-1] == pytest.approx(20, rel=0.25)
    np.testing.assert_array_equal(np.bincount(splits.train.labels(digits_source)), counts)
    np.testing.assert_array_equal(np.bincount(splits.val.labels(digits_source)), [10] * 10)
    np.testing.assert_array_equal(np.bincount(splits.test.labels(digits_source)), [40] * 10)
    _assert_disjoint_and_sorted(splits)


def test_digits_head_takes_all_candidates_of_the_smallest_class(
    digits_source: DatasetSource,
) -> None:
    splits = make_splits(digits_source, seed=0, **DIGITS_DEFAULTS)
    smallest_class = np.bincount(digits_source.pools["all"].labels).min()
    assert splits.class_counts[0] == smallest_class - 40 - 10


def test_splits_are_deterministic_for_a_seed_and_differ_for_another(
    digits_source: DatasetSource,
) -> None:
    first = make_splits(digits_source, seed=3, **DIGITS_DEFAULTS)
    again = make_splits(digits_source, seed=3, **DIGITS_DEFAULTS)
    other = make_splits(digits_source, seed=4, **DIGITS_DEFAULTS)
    assert first.to_dict() == again.to_dict()
    assert not np.array_equal(first.train.indices, other.train.indices)
    assert not np.array_equal(first.test.indices, other.test.indices)


def test_torchvision_recipe_keeps_the_test_pool_whole_and_val_out_of_it() -> None:
    source = synthetic_source("cifar10_lt", {"train": 400, "test": 50}, num_classes=10)
    splits = make_splits(
        source, imbalance_factor=10, val_per_class=5, test_per_class=1, max_per_class=None, seed=0
    )
    assert splits.test.pool == "test" and splits.val.pool == splits.train.pool == "train"
    np.testing.assert_array_equal(splits.test.indices, np.arange(50))
    np.testing.assert_array_equal(np.bincount(splits.val.labels(source)), [5] * 10)
    np.testing.assert_array_equal(splits.class_counts, exponential_profile(35, 10, 10))
    _assert_disjoint_and_sorted(splits)


def test_max_per_class_sets_the_head() -> None:
    source = synthetic_source("mnist_lt", {"train": 400, "test": 10}, num_classes=10)
    splits = make_splits(
        source, imbalance_factor=10, val_per_class=5, test_per_class=1, max_per_class=20, seed=0
    )
    np.testing.assert_array_equal(splits.class_counts, exponential_profile(20, 10, 10))


def test_max_per_class_beyond_the_candidates_names_the_key() -> None:
    source = synthetic_source("mnist_lt", {"train": 400, "test": 10}, num_classes=10)
    with pytest.raises(PipelineError, match=r"data\.max_per_class=36 .*class 0"):
        make_splits(
            source, imbalance_factor=10, val_per_class=5, test_per_class=1, max_per_class=36, seed=0
        )


def test_a_class_too_small_for_val_and_test_names_class_and_keys(
    digits_source: DatasetSource,
) -> None:
    with pytest.raises(PipelineError, match=r"class 0 .*data\.test_per_class.*data\.val_per_class"):
        make_splits(
            digits_source,
            imbalance_factor=20,
            val_per_class=50,
            test_per_class=150,
            max_per_class=None,
            seed=0,
        )


def test_a_class_without_images_is_reported() -> None:
    source = synthetic_source("cifar10_lt", {"train": 40, "test": 10}, num_classes=5)
    labels = source.pools["train"].labels.copy()
    labels[labels == 3] = 2
    pools = {**source.pools, "train": ImagePool(labels=labels, images=source.pools["train"].images)}
    broken = DatasetSource(**{**source.__dict__, "pools": pools})
    with pytest.raises(PipelineError, match=r"class 3 has 0 images.*data\.val_per_class"):
        make_splits(
            broken,
            imbalance_factor=2,
            val_per_class=2,
            test_per_class=1,
            max_per_class=None,
            seed=0,
        )


@pytest.mark.parametrize(
    ("key", "value"),
    [("val_per_class", 0), ("test_per_class", 0), ("max_per_class", 0), ("imbalance_factor", 0.9)],
)
def test_invalid_counts_name_their_key(
    digits_source: DatasetSource, key: str, value: float
) -> None:
    with pytest.raises(PipelineError, match=rf"data\.{key}"):
        make_splits(digits_source, seed=0, **{**DIGITS_DEFAULTS, key: value})


def test_already_long_tailed_lists_use_their_pools_whole() -> None:
    source = synthetic_source("imagenet_lt", {"train": 30, "val": 8, "test": 12}, num_classes=4)
    splits = make_splits(
        source,
        imbalance_factor=100,
        val_per_class=20,
        test_per_class=50,
        max_per_class=None,
        seed=0,
    )
    for split, size in (("train", 30), ("val", 8), ("test", 12)):
        assert splits.part(split).pool == split
        np.testing.assert_array_equal(splits.part(split).indices, np.arange(size))
    np.testing.assert_array_equal(splits.class_counts, [8, 8, 7, 7])


def test_list_dataset_with_an_empty_training_class_points_at_the_list() -> None:
    source = synthetic_source("places_lt", {"train": 12, "val": 5, "test": 5}, num_classes=5)
    source = DatasetSource(**{**source.__dict__, "num_classes": 6})
    with pytest.raises(PipelineError, match=r"class 5 has no images.*data\.lists\.train"):
        make_splits(
            source,
            imbalance_factor=1,
            val_per_class=1,
            test_per_class=1,
            max_per_class=None,
            seed=0,
        )


def test_inat_carves_val_from_train_without_emptying_a_class() -> None:
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1, dtype=np.int64)
    source = synthetic_source("inat2018", {"train": 14, "test": 6}, num_classes=3)
    pools = {**source.pools, "train": ImagePool(labels=labels, images=source.pools["train"].images)}
    source = DatasetSource(**{**source.__dict__, "pools": pools})
    splits = make_splits(
        source, imbalance_factor=1, val_per_class=4, test_per_class=1, max_per_class=None, seed=0
    )
    np.testing.assert_array_equal(np.bincount(splits.val.labels(source), minlength=3), [4, 2, 0])
    np.testing.assert_array_equal(splits.class_counts, [6, 1, 1])
    np.testing.assert_array_equal(splits.test.indices, np.arange(6))
    _assert_disjoint_and_sorted(splits)


def test_unknown_dataset_has_no_recipe() -> None:
    source = synthetic_source("svhn_lt", {"train": 10, "test": 10}, num_classes=2)
    with pytest.raises(PipelineError, match="svhn_lt"):
        make_splits(
            source,
            imbalance_factor=1,
            val_per_class=1,
            test_per_class=1,
            max_per_class=None,
            seed=0,
        )
