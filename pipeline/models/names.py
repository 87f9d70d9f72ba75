"""The names of the backbones, importable without torch or torchvision.

`pipeline.models.registry.build_backbone` builds each of them; ``tailbank check`` validates
``train.backbone`` against :data:`BACKBONES` without importing torch (seconds per command).
"""

from __future__ import annotations

# CIFAR-style ResNets by name -> depth (`pipeline.models.cifar_resnet`).
CIFAR_DEPTHS: dict[str, int] = {
    "resnet20": 20,
    "resnet32": 32,
    "resnet44": 44,
    "resnet56": 56,
    "resnet110": 110,
}

# torchvision's ResNets and ResNeXts (`pipeline.models.torchvision_resnet`).
TORCHVISION_BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
)

BACKBONES: tuple[str, ...] = tuple(CIFAR_DEPTHS) + TORCHVISION_BACKBONES
