"""Backbones by name: ``build_backbone("resnet32", num_classes=10, in_channels=1)``."""

from __future__ import annotations

from core.names import valid_hint
from pipeline.errors import PipelineError
from pipeline.models.base import Backbone
from pipeline.models.cifar_resnet import CifarResNet
from pipeline.models.init import seeded_initialisation
from pipeline.models.names import BACKBONES, CIFAR_DEPTHS, TORCHVISION_BACKBONES

# The names live in `pipeline.models.names`, which validation imports without torch.
__all__ = ["BACKBONES", "CIFAR_DEPTHS", "TORCHVISION_BACKBONES", "build_backbone"]


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
        raise PipelineError(f"unknown backbone '{name}'{valid_hint(name, BACKBONES)}")
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
