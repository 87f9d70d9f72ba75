"""``load_source(name, root)``: every supported dataset by name, as a :class:`DatasetSource`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.names import valid_hint
from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.data.image_folder import load_image_folder_source
from pipeline.data.image_list import load_image_list_source
from pipeline.data.list_sources import LIST_DATASETS, load_list_source
from pipeline.data.names import DATASETS, FILE_DATASETS
from pipeline.data.torchvision_sources import TORCHVISION_DATASETS, load_torchvision_source
from pipeline.errors import PipelineError

# The names live in `pipeline.data.names`, which validation imports without torch.
__all__ = ["DATASETS", "load_digits_source", "load_source"]

# scikit-learn's digits store ink as 0..16; the pipeline's images are uint8 0..255.
DIGITS_MAX_VALUE = 16
# Statistics of the rescaled digits, in [0, 1] pixel units.
DIGITS_MEAN = (0.3053,)
DIGITS_STD = (0.3759,)


def load_source(
    name: str,
    root: str | Path,
    *,
    download: bool = False,
    lists: Mapping[str, str | None] | None = None,
    folders: Mapping[str, str | None] | None = None,
    image_size: int | None = None,
) -> DatasetSource:
    """Load a dataset's pools of images and labels.

    Args:
        name: one of :data:`DATASETS`.
        root: where the files live (ignored by ``digits_lt``, which ships with scikit-learn).
        download: let torchvision fetch missing files (torchvision datasets only).
        lists: split list files of the list datasets and ``image_list``; see
            :func:`pipeline.data.list_sources.load_list_source`.
        folders: train / val / test folders of ``image_folder``; see
            :func:`pipeline.data.image_folder.load_image_folder_source`.
        image_size: side of the square images the model sees, for the datasets read from
            files (:data:`FILE_DATASETS`); ``None`` keeps the dataset's own (224 for those).

    Returns:
        The dataset's :class:`DatasetSource`.

    Raises:
        PipelineError: an unknown name, missing / malformed files, or an ``image_size`` for a
            dataset held in memory.
    """
    if name not in DATASETS:
        hint = valid_hint(name, DATASETS, cutoff=0.4)
        raise PipelineError(f"data.dataset: unknown dataset '{name}'{hint}")
    if image_size is not None and name not in FILE_DATASETS:
        raise PipelineError(
            f"data.image_size: {name} is held in memory at its own size; remove the key (it "
            f"applies to {', '.join(FILE_DATASETS)})"
        )
    root_path = Path(root).expanduser().absolute()
    if name == "digits_lt":
        return load_digits_source()
    if name in TORCHVISION_DATASETS:
        return load_torchvision_source(name, root_path, download=download)
    if name == "image_folder":
        return load_image_folder_source(root_path, folders, image_size)
    if name == "image_list":
        return load_image_list_source(root_path, lists, image_size)
    assert name in LIST_DATASETS
    source = load_list_source(name, root_path, lists)
    return source if image_size is None else replace(source, image_size=image_size)


def load_digits_source() -> DatasetSource:
    """scikit-learn's 1,797 bundled 8x8 digits as one pool ``"all"`` (nothing to download).

    Returns:
        A source with images uint8 [1797, 8, 8, 1] and no separate test pool.
    """
    from sklearn.datasets import load_digits  # imported when used: it costs a second

    digits = load_digits()
    images = np.rint(digits.images * (255 / DIGITS_MAX_VALUE)).astype(np.uint8)[..., np.newaxis]
    labels = digits.target.astype(np.int64)
    return DatasetSource(
        name="digits_lt",
        num_classes=10,
        channels=1,
        image_size=8,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        pools={"all": ImagePool(labels=labels, images=images)},
        has_test_pool=False,
        class_names=tuple(str(digit) for digit in range(10)),
    )
