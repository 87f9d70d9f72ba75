"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read from torchvision's on-disk layout.

MNIST-like sets go through torchvision's own reader. CIFAR batches are unpickled here, with
the file names torchvision uses, because torchvision's reader insists on the md5 sums of the
official archives; when ``download`` is set, torchvision fetches and verifies those archives
first, so real data always passes its integrity check before it is read.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.errors import PipelineError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# Channel statistics of each official training set, in [0, 1] pixel units.
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist_lt": ((0.1307,), (0.3081,)),
    "fashion_mnist_lt": ((0.2860,), (0.3530,)),
    "cifar10_lt": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100_lt": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}

# torchvision.datasets classes by name; torchvision is imported only when one is loaded (it
# costs seconds, which every command would otherwise pay)
MNIST_CLASSES: dict[str, str] = {
    "mnist_lt": "MNIST",
    "fashion_mnist_lt": "FashionMNIST",
}

CIFAR_CLASSES: dict[str, str] = {
    "cifar10_lt": "CIFAR10",
    "cifar100_lt": "CIFAR100",
}

TORCHVISION_DATASETS: tuple[str, ...] = tuple(MNIST_CLASSES) + tuple(CIFAR_CLASSES)


def load_torchvision_source(name: str, root: Path, *, download: bool) -> DatasetSource:
    """Load the train and test pools of a torchvision dataset.

    Args:
        name: one of :data:`TORCHVISION_DATASETS`.
        root: the directory torchvision's layout lives under (``<root>/MNIST/raw/...``).
        download: fetch the official archives when files are missing.

    Returns:
        A source with pools ``"train"`` and ``"test"``, images uint8 [N, H, W, C].

    Raises:
        PipelineError: files missing (and ``download`` off), a failed download, unreadable files.
    """
    import torchvision

    if name in MNIST_CLASSES:
        dataset_class = getattr(torchvision.datasets, MNIST_CLASSES[name])
        pools, class_names = _load_mnist_pools(dataset_class, root, download=download)
    else:
        dataset_class = getattr(torchvision.datasets, CIFAR_CLASSES[name])
        pools, class_names = _load_cifar_pools(dataset_class, root, download=download)
    mean, std = NORMALISATION[name]
    train_images = pools["train"].images
    assert train_images is not None
    return DatasetSource(
        name=name,
        num_classes=len(class_names),
        channels=train_images.shape[3],
        image_size=train_images.shape[1],
        mean=mean,
        std=std,
        pools=pools,
        has_test_pool=True,
        class_names=class_names,
    )


def _require_files(name: str, root: Path, folder: Path, file_names: Sequence[str]) -> None:
    missing = [folder / file_name for file_name in file_names if not (folder / file_name).is_file()]
    if missing:
        raise PipelineError(
            f"`{missing[0]}` not found ({len(missing)} of the {len(file_names)} files {name} "
            f"needs under `{folder}` are missing): point `data.root` at the folder that holds "
            f"`{folder.relative_to(root)}`, put the torchvision {name} files there, "
            "or set `data.download: true` to fetch them"
        )


def _download(dataset_class: type, root: Path) -> None:
    try:
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ...
        raise PipelineError(
            f"downloading {dataset_class.__name__} into `{root}` failed ({error}): check the "
            "network, or put the files there yourself and set `data.download: false`"
        ) from error


def _load_mnist_pools(
    dataset_class: Any, root: Path, *, download: bool
) -> tuple[dict[str, ImagePool], tuple[str, ...]]:
    if download:
        _download(dataset_class, root)
    raw_folder = root / dataset_class.__name__ / "raw"
    _require_files(dataset_class.__name__, root, raw_folder, MNIST_FILES)
    pools = {}
    for pool_name, train in (("train", True), ("test", False)):
        try:
            dataset = dataset_class(str(root), train=train, download=False)
        except Exception as error:  # torchvision's idx reader asserts on corrupt headers
            raise PipelineError(
                f"`{raw_folder}` holds unreadable {dataset_class.__name__} files ({error}): "
                "replace them, or delete them and set `data.download: true`"
            ) from error
        images = dataset.data.numpy().astype(np.uint8)[..., np.newaxis]
        pools[pool_name] = ImagePool(labels=dataset.targets.numpy().astype(np.int64), images=images)
    return pools, tuple(dataset_class.classes)


def _load_cifar_pools(
    dataset_class: Any, root: Path, *, download: bool
) -> tuple[dict[str, ImagePool], tuple[str, ...]]:
    if download:
        _download(dataset_class, root)
    folder = root / dataset_class.base_folder
    train_files = [file_name for file_name, _ in dataset_class.train_list]
    test_files = [file_name for file_name, _ in dataset_class.test_list]
    meta_file = dataset_class.meta["filename"]
    _require_files(dataset_class.__name__, root, folder, [*train_files, *test_files, meta_file])
    class_names = tuple(_unpickle(folder / meta_file)[dataset_class.meta["key"]])
    pools = {
        "train": _read_cifar_batches([folder / file_name for file_name in train_files]),
        "test": _read_cifar_batches([folder / file_name for file_name in test_files]),
    }
    return pools, class_names


def _read_cifar_batches(batch_files: Sequence[Path]) -> ImagePool:
    image_blocks, label_blocks = [], []
    for batch_file in batch_files:
        batch = _unpickle(batch_file)
        label_key = "labels" if "labels" in batch else "fine_labels"
        if "data" not in batch or label_key not in batch:
            raise PipelineError(
                f"`{batch_file}` is not a CIFAR batch (no 'data' / '{label_key}' entry): replace "
                "it, or delete it and set `data.download: true`"
            )
        # CIFAR stores each image as 3 planes of 32x32; the pipeline wants [H, W, C].
        image_blocks.append(np.asarray(batch["data"], np.uint8).reshape(-1, 3, 32, 32))
        label_blocks.append(np.asarray(batch[label_key], np.int64))
    images = np.concatenate(image_blocks).transpose(0, 2, 3, 1)
    return ImagePool(labels=np.concatenate(label_blocks), images=np.ascontiguousarray(images))


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            # latin1 decodes the Python 2 byte strings of the official batches.
            return pickle.load(handle, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as error:
        raise PipelineError(
            f"`{path}` cannot be unpickled ({error}): replace it, or delete it and set "
            "`data.download: true`"
        ) from error
