"""A backbone from a network trained elsewhere: a weights file, never a download.

Accepted files (all read with ``torch.load(weights_only=True)``, so a crafted file can fail to
load but cannot run code):

- the ``state_dict()`` of one of tailbank's backbones (`pipeline.models.registry`);
- the ``state_dict()`` of a torchvision ResNet / ResNeXt of the same name, such as the files
  torchvision's pretrained weights are distributed as (``resnet50-0676ba61.pth``), once
  downloaded by the user;
- either of them wrapped as ``{"state_dict": ...}`` or ``{"model": ...}``, with DDP's
  ``module.`` prefix, or a tailbank model checkpoint (its ``backbone.`` entries).

The head ``fc`` is loaded only when it has one row per class of the data: a head trained on
other classes (ImageNet's 1,000) gives no logits.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import PipelineError
from pipeline.models.base import Backbone
from pipeline.models.names import TORCHVISION_BACKBONES
from pipeline.models.registry import build_backbone

WRAPPER_KEYS = ("state_dict", "model")
DDP_PREFIX = "module."
METHOD_PREFIX = "backbone."
HEAD_KEYS = ("fc.weight", "fc.bias")
# torchvision's module names -> those of `TorchvisionResNet`, which regroups them into a trunk
# and three stages
TORCHVISION_RENAMES = {
    "conv1.": "trunk.0.",
    "bn1.": "trunk.1.",
    "layer1.": "trunk.4.",
    "layer2.": "stages.0.",
    "layer3.": "stages.1.",
    "layer4.": "stages.2.",
}


def load_backbone(
    path: Path, name: str, *, in_channels: int, num_classes: int
) -> tuple[Backbone, bool]:
    """Build backbone ``name`` and load a weights file into it.

    Args:
        path: the weights file (see the module docstring).
        name: the backbone it holds, one of `pipeline.models.names.BACKBONES`.
        in_channels: channels of the images it will see.
        num_classes: C, the classes of the data; the file's head is loaded only if it has C
            rows.

    Returns:
        The backbone on the CPU in eval mode, and whether its head was loaded (its logits
        mean something).

    Raises:
        PipelineError: one line naming the file: unreadable, not a state dict of tensors, or
            weights that do not fit ``name`` (the first mismatching key).
    """
    state = _state_dict(path, _read(path))
    if name in TORCHVISION_BACKBONES and "conv1.weight" in state:
        state = _renamed(state)
    backbone = build_backbone(name, num_classes=num_classes, in_channels=in_channels, seed=0)
    head_fits = all(key in state and state[key].shape[0] == num_classes for key in HEAD_KEYS)
    if not head_fits:
        state = {key: value for key, value in state.items() if key not in HEAD_KEYS}
    try:
        missing, unexpected = backbone.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise PipelineError(f"{path}: its weights do not fit backbone '{name}' with "
                            f"{in_channels} input channels ({_first_line(error)}); pass the "
                            "backbone it was trained as") from None
    missing = [key for key in missing if key not in HEAD_KEYS]
    if missing or unexpected:
        which = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise PipelineError(f"{path}: not the weights of backbone '{name}' ({which}, "
                            f"{len(missing)} missing, {len(unexpected)} unexpected keys); "
                            "pass the backbone it was trained as")
    return backbone.eval(), head_fits


def _read(path: Path) -> Any:
    if not path.is_file():
        raise PipelineError(f"{path}: not found; give the path of a weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses any pickled callable
        raise PipelineError(
            f"{path}: not loadable with torch.load(weights_only=True) "
            f"({type(error).__name__}); save model.state_dict() with torch.save"
        ) from None


def _state_dict(path: Path, payload: Any) -> dict[str, torch.Tensor]:
    """The state dict inside a payload: unwrapped, prefixes stripped, every value a tensor."""
    for key in WRAPPER_KEYS:
        if isinstance(payload, Mapping) and isinstance(payload.get(key), Mapping):
            payload = payload[key]
            break
    if not isinstance(payload, Mapping) or not payload:
        raise PipelineError(f"{path}: holds a {type(payload).__name__}, not a state dict; save "
                            "model.state_dict() with torch.save")
    state: dict[str, torch.Tensor] = {}
    for key, value in payload.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise PipelineError(f"{path}: entry {key!r} is a {type(value).__name__}, not a "
                                "tensor; save model.state_dict() with torch.save")
        # DDP saves `module.<key>`
        state[key.removeprefix(DDP_PREFIX)] = value
    if any(key.startswith(METHOD_PREFIX) for key in state):
        # a tailbank method's state: its backbone, without the method's own heads
        state = {key.removeprefix(METHOD_PREFIX): value for key, value in state.items()
                 if key.startswith(METHOD_PREFIX)}
    return state


def _renamed(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for key, value in state.items():
        prefix = next((old for old in TORCHVISION_RENAMES if key.startswith(old)), None)
        renamed[TORCHVISION_RENAMES[prefix] + key[len(prefix):] if prefix else key] = value
    return renamed


def _first_line(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else "shape mismatch"
    return detail if len(detail) <= 160 else detail[:157] + "..."
