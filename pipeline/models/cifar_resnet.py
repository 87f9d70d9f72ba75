"""The CIFAR-style ResNets of He et al. 2016, Sec. 4.2 (ResNet-20/32/44/56/110).

A 3x3 stem with 16 channels, then three stages of n basic blocks with 16/32/64 channels and
strides 1/2/2, where depth = 6n + 2. Shortcuts that change shape are the paper's option A
(parameter-free: subsample, then zero-pad the new channels), as in the LDAM, BSCE and MBIB
code bases that report CIFAR-LT numbers with these networks.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.models.base import Backbone

STAGE_WIDTHS = (16, 32, 64)
STAGE_STRIDES = (1, 2, 2)


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero channels, no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        """Match the residual branch's shape.

        Args:
            x: ``[B, c_in, h, w]``.

        Returns:
            ``[B, c_out, ceil(h / stride), ceil(w / stride)]``, the new channels zero.
        """
        subsampled = x[:, :, :: self.stride, :: self.stride]
        # The padding spec runs from the last dimension backwards: (w, w, h, h, channels).
        return F.pad(subsampled, (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection, ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        reshapes = stride != 1 or in_channels != out_channels
        self.shortcut = (
            ZeroPadShortcut(in_channels, out_channels, stride) if reshapes else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: ``[B, c_in, h, w]``.

        Returns:
            ``[B, c_out, ceil(h / stride), ceil(w / stride)]``.
        """
        residual = F.relu(self.bn1(self.conv1(x)))
        residual = self.bn2(self.conv2(residual))
        return F.relu(residual + self.shortcut(x))


class CifarResNet(Backbone):
    """ResNet-(6n+2) for small images (any side >= 1; 32x32 CIFAR, 8x8 digits)."""

    def __init__(self, depth: int, *, num_classes: int, in_channels: int) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        blocks_per_stage = (depth - 2) // 6
        self.num_classes = num_classes
        self.stage_dims = STAGE_WIDTHS
        self.feature_dim = STAGE_WIDTHS[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STAGE_WIDTHS[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        width = STAGE_WIDTHS[0]
        for out_width, stride in zip(STAGE_WIDTHS, STAGE_STRIDES, strict=True):
            stages.append(make_stage(width, out_width, stride, blocks_per_stage))
            width = out_width
        self.stages = nn.ModuleList(stages)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        initialise_he(self)

    def forward_stage_maps(self, x: Tensor) -> list[Tensor]:
        """Unpooled outputs of the 16-, 32- and 64-channel stages.

        Args:
            x: ``[B, C_in, H, W]`` images.

        Returns:
            ``[B, 16, H, W]``, ``[B, 32, H/2, W/2]``, ``[B, 64, H/4, W/4]`` (sides rounded up).
        """
        maps = []
        hidden = self.stem(x)
        for stage in self.stages:
            hidden = stage(hidden)
            maps.append(hidden)
        return maps


def make_stage(in_channels: int, out_channels: int, stride: int, blocks: int) -> nn.Sequential:
    """``blocks`` basic blocks; only the first changes resolution and width."""
    layers = [BasicBlock(in_channels, out_channels, stride)]
    layers += [BasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def initialise_he(network: nn.Module) -> None:
    """He (Kaiming) normal init of conv and linear weights; BN to identity, biases to zero."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
