"""Backbones with feature hooks: CIFAR-style ResNets and torchvision's ResNets/ResNeXts.

Every backbone follows timm's API (``forward_features``, ``forward_head``, ``fc``) and adds
``forward_stages``, the pooled outputs of its three stages.
"""

from core.lazy import lazy_package

# Each name is imported from its module on first use: validating params imports the
# torch-free modules of this package (names, options, configs) without torch.
_EXPORTS: dict[str, str] = {
    "Backbone": "pipeline.models.base",
    "global_average_pool": "pipeline.models.base",
    "seeded_initialisation": "pipeline.models.init",
    "BACKBONES": "pipeline.models.names",
    "build_backbone": "pipeline.models.registry",
}
__all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS)
