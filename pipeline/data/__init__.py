"""Datasets, long-tail splits, shot groups, samplers, transforms and loaders of stage 1."""

from core.shots import SHOT_GROUPS, shot_groups
from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.data.loaders import SAMPLINGS, Batch, EpochLoader, default_device, make_loader
from pipeline.data.longtail import exponential_profile, make_splits
from pipeline.data.samplers import ClassBalancedSampler, class_balanced_indices, instance_indices
from pipeline.data.sources import DATASETS, load_source
from pipeline.data.splits import SPLIT_NAMES, SplitPart, Splits
from pipeline.data.transforms import AUGMENTATIONS

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "SAMPLINGS",
    "SHOT_GROUPS",
    "SPLIT_NAMES",
    "Batch",
    "ClassBalancedSampler",
    "DatasetSource",
    "EpochLoader",
    "ImagePool",
    "SplitPart",
    "Splits",
    "class_balanced_indices",
    "default_device",
    "exponential_profile",
    "instance_indices",
    "load_source",
    "make_loader",
    "make_splits",
    "shot_groups",
]
