"""``image_folder``: classes and counts from the folders, splits, a loader batch, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.loaders import make_loader
from pipeline.data.longtail import make_splits
from pipeline.data.sources import load_source
from pipeline.errors import PipelineError
from tests.pipeline.data.standins import write_image_folder

CPU = torch.device("cpu")
# Long-tailed on purpose, and not in name order: classes are sorted by name.
COUNTS = {"zebra": 4, "ant": 9, "cat": 6}


def _splits(source: DatasetSource, val_per_class: int = 2, test_per_class: int = 1, seed: int = 0):
    return make_splits(
        source,
        imbalance_factor=20,
        val_per_class=val_per_class,
        test_per_class=test_per_class,
        max_per_class=None,
        seed=seed,
    )


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "photos", COUNTS, grey=("cat",))
    return tmp_path / "photos"


def test_classes_are_the_sorted_folder_names_and_counts_are_inferred(folder_root: Path) -> None:
    (folder_root / "ant" / "notes.txt").write_text("not an image")
    (folder_root / ".ipynb_checkpoints").mkdir()
    write_image_folder(folder_root / "cat" / "more", {"nested": 1}, seed=5)
    source = load_source("image_folder", folder_root)
    assert source.class_names == ("ant", "cat", "zebra")
    assert source.num_classes == 3 and source.channels == 3 and source.image_size == 224
    train = source.pools["train"]
    assert not train.in_memory
    assert np.bincount(train.labels).tolist() == [9, 7, 4]
    assert all(path.endswith(".png") for path in train.paths or ())
    assert not source.has_test_pool


def test_splits_carve_a_balanced_test_then_val_and_keep_the_rest(folder_root: Path) -> None:
    source = load_source("image_folder", folder_root)
    splits = _splits(source)
    assert splits.class_counts.tolist() == [6, 3, 1]  # no profile: every other image trains
    assert np.bincount(splits.val.labels(source)).tolist() == [2, 2, 2]
    assert np.bincount(splits.test.labels(source)).tolist() == [1, 1, 1]
    assert {splits.train.pool, splits.val.pool, splits.test.pool} == {"train"}
    together = np.concatenate([splits.train.indices, splits.val.indices, splits.test.indices])
    assert sorted(together.tolist()) == list(range(19))
    assert _splits(source).to_dict() == splits.to_dict()
    assert _splits(source, seed=1).to_dict() != splits.to_dict()


def test_own_val_and_test_folders_are_used_whole(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", COUNTS)
    write_image_folder(tmp_path / "test", {"ant": 2, "zebra": 3}, seed=1)
    folders = {"train": "train", "test": str(tmp_path / "test")}
    source = load_source("image_folder", tmp_path, folders=folders)
    assert source.has_test_pool
    assert source.pools["test"].labels.tolist() == [0, 0, 2, 2, 2]
    splits = _splits(source, test_per_class=100)  # ignored: test is the user's own
    assert splits.test.pool == "test" and splits.test.indices.tolist() == [0, 1, 2, 3, 4]
    assert splits.class_counts.tolist() == [7, 4, 2]


def test_a_loader_batch_has_the_image_size(folder_root: Path) -> None:
    source = load_source("image_folder", folder_root, image_size=16)
    splits = _splits(source)
    loader = make_loader(source, splits.val, batch_size=4, train=False, device=CPU)
    batch = next(iter(loader.epoch(0)))
    assert batch.images.shape == (4, 3, 16, 16)  # the greyscale class comes out as RGB too
    assert batch.images.dtype == torch.float32
    train = make_loader(
        source, splits.train, batch_size=5, train=True, augment="crop_flip", device=CPU
    )
    assert next(iter(train.epoch(0))).images.shape == (5, 3, 16, 16)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"data.root: folder `.*nowhere` not found"):
        load_source("image_folder", tmp_path / "nowhere")


def test_root_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(PipelineError, match="holds no class folders: put the images of each"):
        load_source("image_folder", tmp_path)


def test_empty_class_folder(folder_root: Path) -> None:
    (folder_root / "dog").mkdir()
    with pytest.raises(PipelineError, match=r"class folder `.*dog` holds no images .*remove it"):
        load_source("image_folder", folder_root)


def test_missing_test_folder(folder_root: Path) -> None:
    with pytest.raises(PipelineError, match=r"data.folders.test: folder `.*held_out` not found"):
        load_source("image_folder", folder_root, folders={"test": "held_out"})


def test_test_class_unknown_to_train(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", COUNTS)
    write_image_folder(tmp_path / "test", {"ant": 1, "yak": 1})
    with pytest.raises(PipelineError, match=r"data.folders.test: class folder `.*yak` is not a"):
        load_source("image_folder", tmp_path, folders={"train": "train", "test": "test"})


def test_too_few_images_for_val_per_class(folder_root: Path) -> None:
    source = load_source("image_folder", folder_root)
    with pytest.raises(
        PipelineError,
        match=r"class 2 \('zebra'\) of image_folder has 4 training images, but "
        r"data.test_per_class=1 \+ data.val_per_class=3 .* lower data.test_per_class or "
        r"data.val_per_class, add images, or give .* \(data.folders.test or data.folders.val\)",
    ):
        _splits(source, val_per_class=3)


def test_unreadable_image(folder_root: Path) -> None:
    broken = folder_root / "ant" / "0.png"
    broken.write_bytes(b"not a png")
    source = load_source("image_folder", folder_root, image_size=16)
    part = _splits(source).train
    loader = make_loader(source, part, batch_size=64, train=False, device=CPU)
    with pytest.raises(PipelineError, match=r"`.*0.png` cannot be read as an image .*class folder"):
        next(iter(loader.epoch(0)))


def test_image_size_is_refused_for_in_memory_datasets() -> None:
    with pytest.raises(PipelineError, match="data.image_size: digits_lt is held in memory"):
        load_source("digits_lt", "unused", image_size=32)


def test_image_size_resizes_the_list_datasets_too(tmp_path: Path) -> None:
    from tests.pipeline.data.standins import write_list_standin

    lists = {pool: f"ImageNet_LT_{pool}.txt" for pool in ("train", "val", "test")}
    write_list_standin(tmp_path, lists, per_pool=8)
    assert load_source("imagenet_lt", tmp_path, image_size=64).image_size == 64
