"""load_source: the bundled digits, torchvision stand-ins, list stand-ins and every error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.sources import DATASETS, load_source
from pipeline.errors import PipelineError
from tests.pipeline.data.standins import (
    write_cifar_standin,
    write_list_standin,
    write_mnist_standin,
)

IMAGENET_LISTS = {pool: f"ImageNet_LT_{pool}.txt" for pool in ("train", "val", "test")}


def test_digits_are_bundled_uint8_in_one_pool(tmp_path: Path) -> None:
    source = load_source("digits_lt", tmp_path)
    pool = source.pools["all"]
    assert set(source.pools) == {"all"} and not source.has_test_pool
    assert pool.images is not None and pool.images.shape == (1797, 8, 8, 1)
    assert pool.images.dtype == np.uint8 and pool.images.max() == 255
    assert pool.labels.dtype == np.int64 and set(pool.labels.tolist()) == set(range(10))
    assert (source.num_classes, source.channels, source.image_size) == (10, 1, 8)


@pytest.mark.parametrize(
    ("name", "folder"), [("mnist_lt", "MNIST"), ("fashion_mnist_lt", "FashionMNIST")]
)
def test_mnist_standin_loads_through_torchvision(tmp_path: Path, name: str, folder: str) -> None:
    write_mnist_standin(tmp_path, folder, train_size=30, test_size=20)
    source = load_source(name, tmp_path)
    assert {pool: len(images) for pool, images in source.pools.items()} == {"train": 30, "test": 20}
    train_images = source.pools["train"].images
    assert train_images is not None and train_images.shape == (30, 28, 28, 1)
    np.testing.assert_array_equal(source.pools["test"].labels, np.arange(20) % 10)
    assert source.class_names is not None and len(source.class_names) == 10


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_standin_loads_with_torchvision_layout(tmp_path: Path, hundred: bool) -> None:
    write_cifar_standin(tmp_path, hundred=hundred, batch_size=100)
    source = load_source("cifar100_lt" if hundred else "cifar10_lt", tmp_path)
    train_images = source.pools["train"].images
    expected_train = 100 if hundred else 500
    assert train_images is not None and train_images.shape == (expected_train, 32, 32, 3)
    assert source.num_classes == (100 if hundred else 10) and source.channels == 3
    assert source.class_names is not None and source.class_names[1] == "class1"


def test_cifar_planes_become_height_width_channels(tmp_path: Path) -> None:
    write_cifar_standin(tmp_path, hundred=False, batch_size=10)
    with (tmp_path / "cifar-10-batches-py" / "data_batch_1").open("rb") as handle:
        raw = pickle.load(handle)["data"][0]
    image = load_source("cifar10_lt", tmp_path).pools["train"].images[0]  # type: ignore[index]
    # The red plane is the first 1024 bytes of a CIFAR row.
    np.testing.assert_array_equal(image[:, :, 0], raw[:1024].reshape(32, 32))
    np.testing.assert_array_equal(image[:, :, 2], raw[2048:].reshape(32, 32))


def test_missing_mnist_files_name_the_file_and_the_download_key(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"MNIST/raw/train-images-idx3-ubyte.*data\.download"):
        load_source("mnist_lt", tmp_path)


def test_missing_cifar_batch_is_named(tmp_path: Path) -> None:
    write_cifar_standin(tmp_path, hundred=False, batch_size=10)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(PipelineError, match=r"data_batch_3.*1 of the 7 files"):
        load_source("cifar10_lt", tmp_path)


def test_corrupt_cifar_batch_is_named(tmp_path: Path) -> None:
    write_cifar_standin(tmp_path, hundred=False, batch_size=10)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(PipelineError, match="test_batch"):
        load_source("cifar10_lt", tmp_path)


def test_unknown_dataset_lists_names_and_closest_match(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="did you mean 'cifar10_lt'") as caught:
        load_source("cifar10-lt", tmp_path)
    assert all(name in str(caught.value) for name in DATASETS)
    assert "\n" not in str(caught.value)


def test_list_standin_loads_absolute_paths(tmp_path: Path) -> None:
    write_list_standin(tmp_path, IMAGENET_LISTS, per_pool=8)
    source = load_source("imagenet_lt", tmp_path)
    assert set(source.pools) == {"train", "val", "test"}
    train = source.pools["train"]
    assert train.paths is not None and all(Path(path).is_absolute() for path in train.paths)
    assert Path(train.paths[5]).is_file()
    np.testing.assert_array_equal(train.labels, np.arange(8) % 4)
    assert (source.channels, source.image_size, source.num_classes) == (3, 224, 1000)


def test_inat_uses_its_official_val_list_as_test_pool(tmp_path: Path) -> None:
    write_list_standin(
        tmp_path, {"train": "iNaturalist18_train.txt", "test": "iNaturalist18_val.txt"}, 6
    )
    source = load_source("inat2018", tmp_path)
    assert set(source.pools) == {"train", "test"}


def test_inat_rejects_a_val_list(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"data\.lists\.val"):
        load_source("inat2018", tmp_path, lists={"val": "my_val.txt"})


def test_list_paths_can_be_absolute_or_relative_to_root(tmp_path: Path) -> None:
    write_list_standin(tmp_path, IMAGENET_LISTS, per_pool=4)
    moved = tmp_path / "lists" / "train.txt"
    moved.parent.mkdir()
    (tmp_path / "ImageNet_LT_train.txt").rename(moved)
    relative = load_source("imagenet_lt", tmp_path, lists={"train": "lists/train.txt"})
    absolute = load_source("imagenet_lt", tmp_path, lists={"train": str(moved), "val": None})
    assert relative.pools["train"].paths == absolute.pools["train"].paths


def test_missing_list_file_is_named(tmp_path: Path) -> None:
    write_list_standin(tmp_path, IMAGENET_LISTS, per_pool=4)
    (tmp_path / "ImageNet_LT_val.txt").unlink()
    with pytest.raises(PipelineError, match=r"ImageNet_LT_val\.txt.*data\.lists"):
        load_source("imagenet_lt", tmp_path)


def test_malformed_line_names_file_and_line_number(tmp_path: Path) -> None:
    write_list_standin(tmp_path, IMAGENET_LISTS, per_pool=4)
    list_file = tmp_path / "ImageNet_LT_test.txt"
    lines = list_file.read_text().splitlines()
    lines[2] = "test/class2/2.png two"
    list_file.write_text("\n".join(lines))
    with pytest.raises(PipelineError, match=r"ImageNet_LT_test\.txt:3: expected"):
        load_source("imagenet_lt", tmp_path)


def test_label_out_of_range_names_file_and_line_number(tmp_path: Path) -> None:
    write_list_standin(tmp_path, IMAGENET_LISTS, per_pool=4)
    list_file = tmp_path / "ImageNet_LT_train.txt"
    list_file.write_text(list_file.read_text() + "train/class0/0.png 1000\n")
    with pytest.raises(PipelineError, match=r"ImageNet_LT_train\.txt:5: label 1000 .*0\.\.999"):
        load_source("imagenet_lt", tmp_path)


def test_missing_images_report_the_first_and_how_many(tmp_path: Path) -> None:
    write_list_standin(tmp_path, IMAGENET_LISTS, per_pool=6)
    (tmp_path / "val" / "class1" / "1.png").unlink()
    (tmp_path / "val" / "class3" / "3.png").unlink()
    with pytest.raises(PipelineError, match=r"val/class1/1\.png.*2 of 6.*data\.root"):
        load_source("imagenet_lt", tmp_path)
