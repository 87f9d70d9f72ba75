"""torchvision's ImageNet ResNets and ResNeXts behind the :class:`Backbone` interface.

Weights are never downloaded (``weights=None``): tailbank trains every backbone from scratch.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import Tensor, nn

from pipeline.models.base import Backbone

TORCHVISION_BUILDERS: dict[str, Callable[..., torchvision.models.ResNet]] = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
    "resnet152": torchvision.models.resnet152,
    "resnext50_32x4d": torchvision.models.resnext50_32x4d,
    "resnext101_32x8d": torchvision.models.resnext101_32x8d,
}

STEM_WIDTH = 64


class TorchvisionResNet(Backbone):
    """A torchvision ResNet whose three stages are ``layer2``, ``layer3`` and ``layer4``.

    ``layer1`` runs at the stem's resolution and belongs to the trunk before the stages.
    """

    def __init__(self, name: str, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        network = TORCHVISION_BUILDERS[name](weights=None, num_classes=num_classes)
        if in_channels != 3:
            network.conv1 = grey_stem(in_channels)
        self.trunk = nn.Sequential(
            network.conv1, network.bn1, network.relu, network.maxpool, network.layer1
        )
        self.stages = nn.ModuleList([network.layer2, network.layer3, network.layer4])
        self.fc = network.fc
        self.num_classes = num_classes
        self.feature_dim = network.fc.in_features
        dims = tuple(output_width(stage) for stage in self.stages)
        self.stage_dims = (dims[0], dims[1], dims[2])

    def forward_stage_maps(self, x: Tensor) -> list[Tensor]:
        """Unpooled outputs of ``layer2``, ``layer3`` and ``layer4``.

        Args:
            x: ``[B, C_in, H, W]`` images.

        Returns:
            Maps ``[B, stage_dims[i], H / 2^(i+3), W / 2^(i+3)]`` (sides rounded up).
        """
        maps = []
        hidden = self.trunk(x)
        for stage in self.stages:
            hidden = stage(hidden)
            maps.append(hidden)
        return maps


def grey_stem(in_channels: int) -> nn.Conv2d:
    """torchvision's 7x7 stride-2 stem conv for ``in_channels`` inputs, He-initialised."""
    conv = nn.Conv2d(in_channels, STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
    # Same init torchvision gives its own stem, so only the input width differs.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def output_width(stage: nn.Sequential) -> int:
    """Channels a residual stage emits: the width of the last batch norm of its last block."""
    norms = [module for module in stage[-1].modules() if isinstance(module, nn.BatchNorm2d)]
    return norms[-1].num_features
