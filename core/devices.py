"""The one place a device name ("auto", "cpu", "cuda:1", ...) becomes a torch device."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import TailbankError

if TYPE_CHECKING:
    import torch

AUTO = "auto"


def resolve_device(
    name: str = AUTO,
    *,
    key: str = "device",
    error: type[Exception] = TailbankError,
    require_visible: bool = False,
) -> torch.device:
    """``name`` as a torch device; "auto" picks CUDA when it is present, else the CPU.

    Args:
        name: "auto", "cpu", "cuda", "cuda:1", ...
        key: what names the device in the caller's input ("ProbeConfig.device",
            "params.yaml"), for the messages.
        error: the caller's own error type, so its layer's handlers still catch it.
        require_visible: refuse an explicit CUDA device when none is visible, instead of
            failing later, inside the first tensor copy.

    Raises:
        error: ``name`` is not a torch device, or names CUDA that is required but absent.
    """
    import torch  # kept out of import time: `core` is imported by torch-free code

    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if require_visible and name.startswith("cuda") and not torch.cuda.is_available():
        raise error(f"{key}: device '{name}' asked for but no CUDA device is visible; "
                    "set it to auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError as cause:
        raise error(f"{key} {name!r} is not a torch device; use cpu, cuda or auto") from cause
