"""``image_list``: classes from the labels, optional val / test lists, a loader batch, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.loaders import make_loader
from pipeline.data.longtail import make_splits
from pipeline.data.sources import load_source
from pipeline.data.splits import Splits
from pipeline.errors import PipelineError
from tests.pipeline.data.standins import write_image_list

CPU = torch.device("cpu")
# Labels need be neither contiguous nor start at 0; class i is the i-th smallest label.
TRAIN_LABELS = [10] * 3 + [3] * 7 + [7] * 5
TRAIN = {"train": "train.txt"}


def _splits(source: DatasetSource, val_per_class: int = 1, test_per_class: int = 1) -> Splits:
    return make_splits(
        source,
        imbalance_factor=100,  # does not apply: the user's train set is taken as it is
        val_per_class=val_per_class,
        test_per_class=test_per_class,
        max_per_class=None,
        seed=0,
    )


@pytest.fixture
def list_root(tmp_path: Path) -> Path:
    write_image_list(tmp_path, "train.txt", TRAIN_LABELS)
    return tmp_path


def test_classes_are_the_sorted_labels_and_counts_are_inferred(list_root: Path) -> None:
    source = load_source("image_list", list_root, lists=TRAIN)
    assert source.class_names == ("3", "7", "10")
    assert np.bincount(source.pools["train"].labels).tolist() == [7, 5, 3]
    assert source.pools["train"].paths[0] == str(list_root / "images/0.png")  # type: ignore[index]
    assert not source.has_test_pool


def test_splits_without_val_or_test_lists_are_carved_from_train(list_root: Path) -> None:
    source = load_source("image_list", list_root, lists=TRAIN)
    splits = _splits(source)
    assert splits.class_counts.tolist() == [5, 3, 1]
    assert np.bincount(splits.test.labels(source)).tolist() == [1, 1, 1]
    assert np.bincount(splits.val.labels(source)).tolist() == [1, 1, 1]
    shared = np.intersect1d(splits.train.indices, splits.val.indices)
    assert len(shared) == 0 and len(np.intersect1d(splits.val.indices, splits.test.indices)) == 0


def test_val_and_test_lists_are_used_whole(list_root: Path) -> None:
    write_image_list(list_root, "val.txt", [3, 7, 10], folder="val")
    write_image_list(list_root, "lists/test.txt", [7, 7, 3, 10], folder="test")
    lists = {"train": "train.txt", "val": "val.txt", "test": str(list_root / "lists/test.txt")}
    source = load_source("image_list", list_root, lists=lists)
    assert source.pools["test"].labels.tolist() == [1, 1, 0, 2]
    splits = _splits(source, val_per_class=50, test_per_class=50)  # both ignored
    assert (splits.val.pool, splits.test.pool) == ("val", "test")
    assert splits.class_counts.tolist() == [7, 5, 3]
    assert splits.test.indices.tolist() == [0, 1, 2, 3]


def test_a_loader_batch_has_the_image_size(list_root: Path) -> None:
    source = load_source("image_list", list_root, lists=TRAIN, image_size=12)
    loader = make_loader(source, _splits(source).train, batch_size=9, train=False, device=CPU)
    batches = list(loader.epoch(0))
    assert [batch.images.shape for batch in batches] == [(9, 3, 12, 12)]


def test_no_train_list(list_root: Path) -> None:
    with pytest.raises(PipelineError, match="data.lists.train: image_list needs the list"):
        load_source("image_list", list_root)


def test_missing_list_file(list_root: Path) -> None:
    with pytest.raises(PipelineError, match=r"split list `.*nope.txt` not found"):
        load_source("image_list", list_root, lists={"train": "train.txt", "test": "nope.txt"})


def test_line_that_does_not_parse(list_root: Path) -> None:
    (list_root / "train.txt").write_text("images/0.png 3\nimages/1.png\n")
    with pytest.raises(PipelineError, match=r"train.txt:2: expected '<relative/path> <integer"):
        load_source("image_list", list_root, lists=TRAIN)


def test_label_that_is_not_an_integer(list_root: Path) -> None:
    (list_root / "train.txt").write_text("images/0.png 3\n\nimages/1.png cat\n")
    with pytest.raises(PipelineError, match=r"train.txt:3: label 'cat' is not an integer"):
        load_source("image_list", list_root, lists=TRAIN)


def test_listed_path_that_does_not_exist(list_root: Path) -> None:
    with (list_root / "train.txt").open("a") as handle:
        handle.write("images/gone.png 3\n")
    with pytest.raises(PipelineError, match=r"`.*gone.png` listed in `.*train.txt` does not exist"):
        load_source("image_list", list_root, lists=TRAIN)


def test_test_label_unknown_to_train(list_root: Path) -> None:
    write_image_list(list_root, "test.txt", [3, 4], folder="test")
    with pytest.raises(PipelineError, match=r"test.txt:2: label 4 never occurs in the training"):
        load_source("image_list", list_root, lists={"train": "train.txt", "test": "test.txt"})


def test_too_few_images_for_val_per_class(list_root: Path) -> None:
    write_image_list(list_root, "test.txt", [3, 7], folder="test")
    source = load_source("image_list", list_root, lists={"train": "train.txt", "test": "test.txt"})
    with pytest.raises(
        PipelineError,
        match=r"class 2 \('10'\) of image_list has 3 training images, but data.val_per_class=3 "
        r".* lower data.val_per_class, add images, or give .* \(data.lists.val\)",
    ):
        _splits(source, val_per_class=3)
