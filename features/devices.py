"""Where stage-2 fits run: the torch device from a config's name, and detached state copies."""

from __future__ import annotations

import torch

from core.devices import resolve_device
from features.errors import FeaturesError


def torch_device(name: str, key: str) -> torch.device:
    """``name`` as a torch device (`core.devices.resolve_device`); "auto" picks CUDA when
    available.

    Args:
        name: "auto", "cpu", "cuda", "cuda:1", ...
        key: the config field, for the message ("ProbeConfig.device").

    Raises:
        FeaturesError: ``name`` is not a torch device.
    """
    return resolve_device(name, key=key, error=FeaturesError)


def state_snapshot(module: torch.nn.Module, device: str | None = None) -> dict[str, torch.Tensor]:
    """A detached copy of ``module``'s state dict (on ``device`` when given), for keeping the
    best epoch or saving; later training steps do not change it."""
    return {
        key: value.detach().clone().to(device) if device else value.detach().clone()
        for key, value in module.state_dict().items()
    }
