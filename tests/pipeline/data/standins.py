"""Stand-ins for the on-disk datasets (written under a test's tmp_path) and small sources."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.dataset_source import DatasetSource, ImagePool

IDX_UBYTE_IMAGES = 0x0803
IDX_UBYTE_LABELS = 0x0801


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format of the MNIST files (big-endian header)."""
    magic = IDX_UBYTE_IMAGES if array.ndim == 3 else IDX_UBYTE_LABELS
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", side) for side in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_standin(root: Path, folder: str, train_size: int, test_size: int) -> None:
    """Tiny MNIST-layout files: ``<root>/<folder>/raw/{train,t10k}-{images,labels}-...``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, size in (("train", train_size), ("t10k", test_size)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (size, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(size) % 10)


def write_cifar_standin(root: Path, hundred: bool, batch_size: int) -> None:
    """Tiny CIFAR pickles with torchvision's folder and file names."""
    rng = np.random.default_rng(0)
    num_classes = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"
    batches = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    batches += [] if hundred else ["test_batch"]
    for batch in batches:
        data = rng.integers(0, 256, (batch_size, 3072), dtype=np.uint8)
        labels = [int(label) for label in np.arange(batch_size) % num_classes]
        with (folder / batch).open("wb") as handle:
            pickle.dump({"data": data, label_key: labels}, handle)
    meta_file, meta_key = (
        ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    )
    with (folder / meta_file).open("wb") as handle:
        pickle.dump({meta_key: [f"class{index}" for index in range(num_classes)]}, handle)


def write_list_standin(
    root: Path, list_names: dict[str, str], per_pool: int, num_classes: int = 4
) -> None:
    """Tiny colour PNGs under ``root`` and one ``path label`` list per pool."""
    rng = np.random.default_rng(0)
    for pool, list_name in list_names.items():
        lines = []
        for position in range(per_pool):
            relative = Path(pool) / f"class{position % num_classes}" / f"{position}.png"
            (root / relative).parent.mkdir(parents=True, exist_ok=True)
            # Uneven sizes exercise resizing and cropping.
            pixels = rng.integers(0, 256, (20 + position % 3, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / relative)
            lines.append(f"{relative.as_posix()} {position % num_classes}")
        (root / list_name).write_text("\n".join(lines) + "\n")


def synthetic_source(name: str, pool_sizes: dict[str, int], num_classes: int) -> DatasetSource:
    """An in-memory source with random 8x8 greyscale images and cyclic labels."""
    rng = np.random.default_rng(1)
    pools = {
        pool: ImagePool(
            labels=(np.arange(size) % num_classes).astype(np.int64),
            images=rng.integers(0, 256, (size, 8, 8, 1), dtype=np.uint8),
        )
        for pool, size in pool_sizes.items()
    }
    return DatasetSource(
        name=name,
        num_classes=num_classes,
        channels=1,
        image_size=8,
        mean=(0.5,),
        std=(0.25,),
        pools=pools,
        has_test_pool="all" not in pools,
    )


def write_png(path: Path, rng: np.random.Generator, *, grey: bool = False) -> None:
    """A small random PNG (colour or greyscale) of uneven size, to exercise resizing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (18 + int(rng.integers(0, 6)), 20 + int(rng.integers(0, 6)))
    pixels = rng.integers(0, 256, shape if grey else (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_image_folder(
    folder: Path, counts: dict[str, int], grey: tuple[str, ...] = (), seed: int = 0
) -> None:
    """``folder/<class>/<i>.png`` with ``counts[class]`` images; classes in ``grey`` are
    greyscale."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        for position in range(count):
            write_png(folder / name / f"{position}.png", rng, grey=name in grey)


def write_image_list(
    root: Path, list_name: str, labels: list[int], folder: str = "images", seed: int = 0
) -> None:
    """One PNG per label under ``root/<folder>/`` and the list ``root/<list_name>`` naming
    them as ``<folder>/<i>.png <label>`` lines."""
    rng = np.random.default_rng(seed)
    lines = []
    for position, label in enumerate(labels):
        relative = f"{folder}/{position}.png"
        write_png(root / relative, rng, grey=position % 2 == 1)
        lines.append(f"{relative} {label}")
    (root / list_name).parent.mkdir(parents=True, exist_ok=True)
    (root / list_name).write_text("\n".join(lines) + "\n")
