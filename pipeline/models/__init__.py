"""Backbones with feature hooks: CIFAR-style ResNets and torchvision's ResNets/ResNeXts.

Every backbone follows timm's API (``forward_features``, ``forward_head``, ``fc``) and adds
``forward_stages``, the pooled outputs of its three stages.
"""

from pipeline.models.base import Backbone, global_average_pool
from pipeline.models.init import seeded_initialisation
from pipeline.models.registry import BACKBONES, build_backbone, closest_hint

__all__ = [
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "closest_hint",
    "global_average_pool",
    "seeded_initialisation",
]
