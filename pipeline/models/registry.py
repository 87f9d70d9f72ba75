"""Backbones by name: ``build_backbone("resnet32", num_classes=10, in_channels=1)``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pipeline.errors import PipelineError
from pipeline.models.base import Backbone
from pipeline.models.cifar_resnet import CifarResNet
from pipeline.models.init import seeded_initialisation

CIFAR_DEPTHS: dict[str, int] = {
    "resnet20": 20,
    "resnet32": 32,
    "resnet44": 44,
    "resnet56": 56,
    "resnet110": 110,
}

# torchvision's ResNets and ResNeXts, built by `pipeline.models.torchvision_resnet`; named here
# so that a name is checked without importing torchvision (seconds per command)
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


def closest_hint(name: str, valid: Sequence[str]) -> str:
    """``"; did you mean 'x'? valid: a, b, c"``: the tail of an unknown-name error message."""
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    suggestion = f"; did you mean '{matches[0]}'?" if matches else ";"
    return f"{suggestion} valid: {', '.join(valid)}"


def build_backbone(
    name: str, *, num_classes: int, in_channels: int, seed: int | None = None
) -> Backbone:
    """Build a backbone with freshly initialised weights (nothing is ever downloaded).

    Args:
        name: one of :data:`BACKBONES`.
        num_classes: C, the width of the linear head.
        in_channels: channels of the input images (1 for greyscale, 3 for colour).
        seed: seed of the initial weights; ``None`` draws them from torch's default generator.

    Returns:
        The backbone, on the CPU, in training mode.

    Raises:
        PipelineError: unknown ``name`` or non-positive ``num_classes`` / ``in_channels``.
    """
    if name not in BACKBONES:
        raise PipelineError(f"unknown backbone '{name}'{closest_hint(name, BACKBONES)}")
    if num_classes < 1 or in_channels < 1:
        raise PipelineError(
            f"backbone '{name}': num_classes ({num_classes}) and in_channels ({in_channels}) "
            "must be positive; check the dataset's class counts and image channels"
        )
    with seeded_initialisation(seed):
        if name in CIFAR_DEPTHS:
            return CifarResNet(CIFAR_DEPTHS[name], num_classes=num_classes, in_channels=in_channels)
        from pipeline.models.torchvision_resnet import TorchvisionResNet

        return TorchvisionResNet(name, num_classes=num_classes, in_channels=in_channels)
