"""``image_list``: the user's images named by ``<relative/path> <integer label>`` lines.

The lines look like the ImageNet-LT / Places-LT split lists; paths are relative to
``data.root``. ``data.lists.train`` is required, ``data.lists.val`` / ``.test`` are optional
(a split without a list is carved out of train). The classes are the distinct labels of the
training list in increasing order: label ``l`` becomes class ``i``, the ``i``-th of them, so
labels need not start at 0 or be contiguous.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.data.list_sources import require_images
from pipeline.data.user_source import resolve_path, user_source
from pipeline.errors import PipelineError

# One parsed list: (relative path, label as written, line number) per image.
ListEntries = list[tuple[str, int, int]]


def load_image_list_source(
    root: Path, lists: Mapping[str, str | None] | None = None, image_size: int | None = None
) -> DatasetSource:
    """Read and check the lists of an image-list dataset (no image is opened).

    Args:
        root: ``data.root``, the folder every listed path is relative to.
        lists: pool name (``"train"``, ``"val"``, ``"test"``) to a list file, absolute or
            relative to ``root``; ``"train"`` is required.
        image_size: side of the square images the model sees; ``None`` for 224.

    Returns:
        A source whose pools hold absolute image paths and labels 0..C-1.

    Raises:
        PipelineError: no training list, a missing list file, a line that does not parse, a
            label that is not an integer or not a training label, or a missing image.
    """
    lists = dict(lists or {})
    if lists.get("train") is None:
        raise PipelineError(
            "data.lists.train: image_list needs the list of training images "
            "('<relative/path> <integer label>' per line): set it to the list's path, "
            "absolute or relative to data.root"
        )
    list_files = {
        pool: resolve_path(root, lists[pool])
        for pool in ("train", "val", "test")
        if lists.get(pool) is not None
    }
    entries = {pool: (list_file, _read_lines(list_file)) for pool, list_file in list_files.items()}
    labels_written = sorted({label for _, label, _ in entries["train"][1]})
    class_of = {label: index for index, label in enumerate(labels_written)}
    pools = {
        pool: _pool(list_file, pool_entries, root, class_of)
        for pool, (list_file, pool_entries) in entries.items()
    }
    class_names = tuple(str(label) for label in labels_written)
    return user_source("image_list", pools, class_names, image_size)


def _read_lines(list_file: Path) -> ListEntries:
    if not list_file.is_file():
        raise PipelineError(
            f"split list `{list_file}` not found: put it there or point data.lists at it"
        )
    entries = []
    with list_file.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                path, label = _parse_line(list_file, line_number, line.strip())
                entries.append((path, label, line_number))
    if not entries:
        raise PipelineError(f"split list `{list_file}` lists no images: add some lines")
    return entries


def _parse_line(list_file: Path, line_number: int, line: str) -> tuple[str, int]:
    # Split from the right so that a path with spaces keeps them.
    fields = line.rsplit(maxsplit=1)
    if len(fields) != 2:
        raise PipelineError(
            f"{list_file}:{line_number}: expected '<relative/path> <integer label>', got "
            f"'{line}'; fix the line"
        )
    try:
        return fields[0], int(fields[1])
    except ValueError:
        raise PipelineError(
            f"{list_file}:{line_number}: label '{fields[1]}' is not an integer; write each "
            "class as an integer label (e.g. 0..C-1)"
        ) from None


def _pool(
    list_file: Path, entries: ListEntries, root: Path, class_of: dict[int, int]
) -> ImagePool:
    for _, label, line_number in entries:
        if label not in class_of:
            raise PipelineError(
                f"{list_file}:{line_number}: label {label} never occurs in the training list, "
                "so no model could learn it: fix the line or add training images of it"
            )
    paths = tuple(str(root / path) for path, _, _ in entries)
    require_images(list_file, paths)
    labels = np.asarray([class_of[label] for _, label, _ in entries], dtype=np.int64)
    return ImagePool(labels=labels, paths=paths)
