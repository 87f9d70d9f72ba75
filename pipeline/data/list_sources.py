"""ImageNet-LT, Places-LT and iNaturalist 2018: images on disk, described by split lists.

A split list has one ``relative/path.jpg label`` line per image; paths are relative to the
image root, the list files themselves are absolute or relative to that root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.errors import PipelineError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LIST_IMAGE_SIZE = 224


@dataclass(frozen=True)
class ListDatasetSpec:
    """What distinguishes one list dataset from another.

    Attributes:
        num_classes: C.
        default_lists: pool name to the file name of its official list.
    """

    num_classes: int
    default_lists: dict[str, str]


LIST_DATASETS: dict[str, ListDatasetSpec] = {
    "imagenet_lt": ListDatasetSpec(
        1000,
        {pool: f"ImageNet_LT_{pool}.txt" for pool in ("train", "val", "test")},
    ),
    "places_lt": ListDatasetSpec(
        365,
        {pool: f"Places_LT_{pool}.txt" for pool in ("train", "val", "test")},
    ),
    # iNaturalist 2018 has no public test labels: its official val list serves as the test
    # pool, and the val split is carved out of train (see longtail.make_splits).
    "inat2018": ListDatasetSpec(
        8142,
        {"train": "iNaturalist18_train.txt", "test": "iNaturalist18_val.txt"},
    ),
}


def load_list_source(
    name: str, root: Path, lists: Mapping[str, str | None] | None = None
) -> DatasetSource:
    """Read and validate the split lists of a list dataset.

    Args:
        name: a key of :data:`LIST_DATASETS`.
        root: the image root every listed path is relative to.
        lists: pool name (``"train"``, ``"val"``, ``"test"``) to a list file, absolute or
            relative to ``root``; a missing key or ``None`` means the official file name.

    Returns:
        A source whose pools hold absolute image paths and int64 labels.

    Raises:
        PipelineError: an unknown pool key, a missing list file, a malformed line, a label out
            of range, or listed images that do not exist.
    """
    spec = LIST_DATASETS[name]
    list_files = _resolve_list_files(name, spec, root, lists or {})
    pools = {
        pool: _read_list(list_file, root, spec.num_classes)
        for pool, list_file in list_files.items()
    }
    return DatasetSource(
        name=name,
        num_classes=spec.num_classes,
        channels=3,
        image_size=LIST_IMAGE_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pools=pools,
        has_test_pool=True,
    )


def _resolve_list_files(
    name: str, spec: ListDatasetSpec, root: Path, lists: Mapping[str, str | None]
) -> dict[str, Path]:
    for pool, list_file in lists.items():
        if pool not in spec.default_lists and list_file is not None:
            raise PipelineError(
                f"data.lists.{pool}: {name} has no '{pool}' list (pools: "
                f"{', '.join(spec.default_lists)}); remove the key"
            )
    resolved = {}
    for pool, default_file in spec.default_lists.items():
        list_file = Path(lists.get(pool) or default_file).expanduser()
        resolved[pool] = list_file if list_file.is_absolute() else root / list_file
    return resolved


def _read_list(list_file: Path, root: Path, num_classes: int) -> ImagePool:
    if not list_file.is_file():
        raise PipelineError(
            f"split list `{list_file}` not found: put it there or point data.lists at it"
        )
    relative_paths, labels = _parse_lines(list_file, num_classes)
    paths = tuple(str(root / relative_path) for relative_path in relative_paths)
    require_images(list_file, paths)
    return ImagePool(labels=np.asarray(labels, dtype=np.int64), paths=paths)


def _parse_lines(list_file: Path, num_classes: int) -> tuple[list[str], list[int]]:
    relative_paths, labels = [], []
    with list_file.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            # Split from the right so that a path with spaces keeps them.
            fields = line.strip().rsplit(maxsplit=1)
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise PipelineError(
                    f"{list_file}:{line_number}: expected '<relative/path> <integer label>', "
                    f"got '{line.strip()}'; fix the line"
                )
            label = int(fields[1])
            if not 0 <= label < num_classes:
                raise PipelineError(
                    f"{list_file}:{line_number}: label {label} is outside 0..{num_classes - 1}; "
                    "fix the line or use the list of the right dataset"
                )
            relative_paths.append(fields[0])
            labels.append(label)
    if not labels:
        raise PipelineError(
            f"split list `{list_file}` lists no images: point data.lists at a full list"
        )
    return relative_paths, labels


def require_images(list_file: Path, paths: tuple[str, ...]) -> None:
    """Fail with one line naming the first listed image that does not exist."""
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise PipelineError(
            f"`{missing[0]}` listed in `{list_file}` does not exist ({len(missing)} of "
            f"{len(paths)} listed images are missing): set data.root to the image root the "
            "list's paths are relative to"
        )
