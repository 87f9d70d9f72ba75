"""Datasets, long-tail splits, shot groups, samplers, transforms and loaders of stage 1."""

from core.lazy import lazy_package

# Each name is imported from its module on first use: validating params imports the
# torch-free modules of this package (names, options, configs) without torch.
_EXPORTS: dict[str, str] = {
    "DatasetSource": "pipeline.data.dataset_source",
    "ImagePool": "pipeline.data.dataset_source",
    "SAMPLINGS": "pipeline.data.loaders",
    "Batch": "pipeline.data.loaders",
    "EpochLoader": "pipeline.data.loaders",
    "default_device": "pipeline.data.loaders",
    "make_loader": "pipeline.data.loaders",
    "SHOT_GROUPS": "core.shots",
    "exponential_profile": "pipeline.data.longtail",
    "make_splits": "pipeline.data.longtail",
    "shot_groups": "core.shots",
    "class_balanced_indices": "pipeline.data.samplers",
    "instance_indices": "pipeline.data.samplers",
    "DATASETS": "pipeline.data.names",
    "load_source": "pipeline.data.sources",
    "SPLIT_NAMES": "pipeline.data.splits",
    "SplitPart": "pipeline.data.splits",
    "Splits": "pipeline.data.splits",
    "AUGMENTATIONS": "pipeline.data.names",
}
__all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS)
