"""The heads a bank classifier is made of, and the probe that standardises their input."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LinearHead(nn.Module):
    """z = W x + b.

    Args:
        weight: float [C, D].
        bias: float [C].
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps x [N, D] to logits [N, C]."""
        return F.linear(x, self.weight, self.bias)


class CosineHead(nn.Module):
    """z_c = s * cos(x, w_c) = s * <x, w_c> / (||x|| ||w_c||).

    Args:
        weight: float [C, D].
        scale: s.
    """

    def __init__(self, weight: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps x [N, D] to logits [N, C]."""
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class ScaledLinearHead(nn.Module):
    """Learnable weight scaling (Kang et al. 2020, Sec. 4.2): z_c = f_c (w_c . x) + b_c.

    W and b are frozen buffers; only the per-class scales f [C] are learnt, starting at 1.

    Args:
        weight: float [C, D].
        bias: float [C].
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.scales = nn.Parameter(torch.ones(len(weight), dtype=weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps x [N, D] to logits [N, C]."""
        return self.scales * F.linear(x, self.weight) + self.bias


class Probe(nn.Module):
    """A head on standardised features: head((x - mean) / std), mean and std from train only.

    Args:
        mean: float [D], per-feature mean of the training rows.
        std: float [D], per-feature standard deviation of the training rows.
        head: Maps standardised features [N, D] to logits [N, C].
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, head: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps features x [N, D] to logits [N, C]."""
        return self.head((x - self.mean) / self.std)
