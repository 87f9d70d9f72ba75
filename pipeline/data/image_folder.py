"""``image_folder``: the user's images in torchvision's ImageFolder layout, ``<folder>/<class>/``.

The training folder (``data.root``, or ``data.folders.train`` under it) holds one sub-folder
per class; classes are the sub-folder names in sorted order, so label ``i`` is the ``i``-th
name. Optional val and test folders (``data.folders.val`` / ``.test``) have the same layout
with some or all of those classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.data.user_source import resolve_path, user_source
from pipeline.errors import PipelineError

# The file types torchvision's ImageFolder reads; anything else (notes, .DS_Store) is skipped.
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
)

FOLDER_POOLS: tuple[str, ...] = ("train", "val", "test")


def load_image_folder_source(
    root: Path, folders: Mapping[str, str | None] | None = None, image_size: int | None = None
) -> DatasetSource:
    """Find the classes and images of an image-folder dataset (no image is opened).

    Args:
        root: ``data.root``.
        folders: pool name (``"train"``, ``"val"``, ``"test"``) to its folder, absolute or
            relative to ``root``; a missing ``"train"`` is ``root`` itself, a missing val or
            test folder means that split is carved out of train.
        image_size: side of the square images the model sees; ``None`` for 224.

    Returns:
        A source whose pools hold absolute image paths, class by class in name order.

    Raises:
        PipelineError: a missing folder, no class folders, an empty class folder, or a val or
            test class that the training folder does not have.
    """
    folders = dict(folders or {})
    train_folder = _existing_folder(root, folders.get("train"), _key("train", folders))
    class_names = _class_folders(train_folder)
    pools = {"train": _read_pool(train_folder, class_names, _key("train", folders), train=True)}
    for pool in ("val", "test"):
        if folders.get(pool) is not None:
            folder = _existing_folder(root, folders[pool], _key(pool, folders))
            pools[pool] = _read_pool(folder, class_names, _key(pool, folders), train=False)
    return user_source("image_folder", pools, class_names, image_size)


def _key(pool: str, folders: Mapping[str, str | None]) -> str:
    """The params key that names a pool's folder, for error messages."""
    if pool == "train" and folders.get("train") is None:
        return "data.root"
    return f"data.folders.{pool}"


def _existing_folder(root: Path, path: str | None, key: str) -> Path:
    folder = resolve_path(root, path)
    if not folder.is_dir():
        raise PipelineError(
            f"{key}: folder `{folder}` not found: point {key} at the folder that holds one "
            "sub-folder of images per class"
        )
    return folder


def _class_folders(folder: Path) -> tuple[str, ...]:
    # Hidden folders (.ipynb_checkpoints, .git) are tools' leftovers, never classes.
    entries = [entry for entry in folder.iterdir() if entry.is_dir()]
    names = sorted(entry.name for entry in entries if not entry.name.startswith("."))
    if not names:
        raise PipelineError(
            f"`{folder}` holds no class folders: put the images of each class in a sub-folder "
            "named after it (<folder>/<class>/<image>)"
        )
    return tuple(names)


def _read_pool(
    folder: Path, class_names: tuple[str, ...], key: str, *, train: bool
) -> ImagePool:
    """Every image of ``folder``'s class sub-folders; val and test may lack some classes."""
    found = _class_folders(folder)
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise PipelineError(
            f"{key}: class folder `{folder / unknown[0]}` is not a class of the training "
            f"folder ({len(unknown)} such folders): rename it to a training class or remove it"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        images = _images_under(folder / name) if name in found else []
        if train and not images:
            raise PipelineError(
                f"class folder `{folder / name}` holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}): add images to it or remove it"
            )
        paths += images
        labels += [label] * len(images)
    if not paths:
        raise PipelineError(f"{key}: `{folder}` holds no images in its class folders: add some")
    return ImagePool(labels=np.asarray(labels, dtype=np.int64), paths=tuple(paths))


def _images_under(folder: Path) -> list[str]:
    """Image files anywhere below ``folder``, sorted so the order never depends on the disk."""
    found = []
    for directory, _, files in os.walk(folder, followlinks=True):
        found += [
            os.path.join(directory, name)
            for name in files
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        ]
    return sorted(found)
