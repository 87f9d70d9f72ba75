"""The ``data`` section of params.yaml: which images, and how the splits are drawn.

Unlike the other sections it configures no library dataclass (the images are loaded by
`pipeline.data.load_source` and split by `make_splits`, which take plain arguments), so its
keys, defaults and rules are written here. Model checkpoints and banks carry a digest of it:
keys added later leave the digest alone while they are at their default (`DataParams._dump`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from core.constraints import SEED
from pipeline.data.names import (
    DATASETS,
    FILE_DATASETS,
    PROFILED_TRAIN_POOL_DATASETS,
    VAL_SOURCES,
)
from stages.sections import Bool, Float, Int, Str, StrictSection, known

Dataset = Annotated[str, Strict(), known(DATASETS)]
ValSource = Annotated[str, Strict(), known(VAL_SOURCES)]


class SplitLists(StrictSection):
    """Split list files of the list datasets (ImageNet-LT, Places-LT, iNaturalist 2018) and of
    ``image_list`` (``train`` required there)."""

    train: Str | None = None
    val: Str | None = None
    test: Str | None = None


class SplitFolders(StrictSection):
    """Class-folder trees of ``image_folder``, absolute or relative to ``data.root``.

    ``train: null`` is ``data.root`` itself; a val or test folder left null means that split is
    carved out of the training images (``val_per_class`` / ``test_per_class`` per class).
    """

    train: Str | None = None
    val: Str | None = None
    test: Str | None = None


class DataParams(StrictSection):
    """Which images, and how the long-tailed train / balanced val / test splits are made.

    ``split_seed`` draws the splits; it is not one of the training ``seeds``, so every seed
    trains on the same images and is tested on the same rows (paired comparisons need that).
    """

    dataset: Dataset = "digits_lt"
    root: Str = "data/raw"
    download: Bool = False
    split_seed: Int = Field(0, ge=0, le=SEED.high)
    imbalance_factor: Float = Field(20.0, ge=1.0)
    max_per_class: Int | None = Field(None, ge=1)
    val_per_class: Int = Field(10, ge=1)
    test_per_class: Int = Field(40, ge=1)
    # validated even when left out: image_list needs its training list
    lists: SplitLists = Field(SplitLists(), validate_default=True)
    # Keys after this line are left out of the section's dump at their default (see _dump).
    # The side of the square images the model sees, for datasets read from image files
    # (null: 224); the in-memory datasets keep their own size.
    image_size: Int | None = Field(None, ge=8)
    # Where the balanced val split of a profiled torchvision dataset comes from: "train" holds
    # it out before the profile; "left_out" keeps the papers' train set (the profile over the
    # whole train pool, as LDAM draws CIFAR-LT) and takes val from what the profile left out.
    val_from: ValSource = "train"
    folders: SplitFolders = SplitFolders()

    @field_validator("lists")
    @classmethod
    def _lists_for(cls, lists: SplitLists, info: ValidationInfo) -> SplitLists:
        dataset = info.data.get("dataset")
        if dataset == "image_folder" and lists != SplitLists():
            raise ValueError("image_folder reads class folders, not lists; use data.folders "
                             "(or data.dataset: image_list)")
        if dataset == "image_list" and lists.train is None:
            raise ValueError("image_list needs data.lists.train, the list of training images "
                             "('<relative/path> <integer label>' per line)")
        return lists

    @field_validator("image_size")
    @classmethod
    def _image_size_for(cls, image_size: int | None, info: ValidationInfo) -> int | None:
        dataset = info.data.get("dataset")
        if image_size is not None and dataset is not None and dataset not in FILE_DATASETS:
            raise ValueError(f"{dataset} is held in memory at its own size; remove the key (it "
                             f"applies to {', '.join(FILE_DATASETS)})")
        return image_size

    @field_validator("val_from")
    @classmethod
    def _val_from_for(cls, val_from: str, info: ValidationInfo) -> str:
        dataset = info.data.get("dataset")
        if val_from == "left_out" and dataset is not None and (
                dataset not in PROFILED_TRAIN_POOL_DATASETS):
            raise ValueError(f"'left_out' applies to a profile drawn from a train pool "
                             f"({', '.join(PROFILED_TRAIN_POOL_DATASETS)}), not to {dataset}; "
                             "remove the key")
        return val_from

    @field_validator("folders")
    @classmethod
    def _folders_for(cls, folders: SplitFolders, info: ValidationInfo) -> SplitFolders:
        dataset = info.data.get("dataset")
        if folders != SplitFolders() and dataset is not None and dataset != "image_folder":
            raise ValueError(f"class folders apply to image_folder, not to {dataset}; remove "
                             "the key")
        return folders

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The section as a dict, without the keys added later that are at their default.

        Model checkpoints and banks store `section_digest` of this dump, so its JSON is part of
        their bytes. Leaving a later key out while it has its default keeps the digest of
        params that do not use the key as it was before the key existed, and with it every
        model and bank byte for byte; a key set to anything else is digested as usual.
        """
        dumped = handler(self)
        for key in DATA_KEYS_DIGESTED_WHEN_SET:
            if getattr(self, key) == type(self).model_fields[key].default:
                dumped.pop(key, None)
        return dumped


# Keys of `data` added after outputs began to carry digests of the section (see _dump).
DATA_KEYS_DIGESTED_WHEN_SET: tuple[str, ...] = ("image_size", "val_from", "folders")
