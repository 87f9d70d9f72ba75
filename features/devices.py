"""The torch device a stage-2 fit runs on, from its config's device name."""

from __future__ import annotations

import torch

from features.errors import FeaturesError


def torch_device(name: str, key: str) -> torch.device:
    """``name`` as a torch device; "auto" picks CUDA when available.

    Args:
        name: "auto", "cpu", "cuda", "cuda:1", ...
        key: the config field, for the message ("ProbeConfig.device").

    Raises:
        FeaturesError: ``name`` is not a torch device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise FeaturesError(
            f"{key} {name!r} is not a torch device; use cpu, cuda or auto"
        ) from error
