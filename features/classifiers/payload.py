"""A fitted classifier as plain values and tensors, for files read with
``torch.load(weights_only=True)``; and a linear classifier as a map of the raw features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from features.classifiers.fitted import INPUT_FEATURES, INPUT_LOGITS, FittedClassifier
from features.classifiers.heads import CosineHead, LinearHead, Probe, ScaledLinearHead
from features.configs import CLASSIFIER_KINDS
from features.devices import state_snapshot
from features.errors import FeaturesError

_HEADS: dict[type, str] = {
    LinearHead: "linear",
    CosineHead: "cosine",
    ScaledLinearHead: "scaled_linear",
}


def classifier_payload(fitted: FittedClassifier) -> dict[str, Any]:
    """A fitted classifier as plain values and tensors, which `torch.load(weights_only=True)`
    reads back without unpickling any object (`classifier_from_payload` is the inverse).

    Returns:
        {"kind", "selected", "num_classes", "input_dim", "input_field", "head" (None for
        `head`, else "linear" / "cosine" / "scaled_linear"), "scale" (the cosine s or None),
        "state" (the probe's state_dict on CPU)}, and "shift" (float32 [C]) for a kind
        that shifts its scores (`logit_adjusted`) only, so other payloads keep their bytes.
    """
    model = fitted.model
    head = None if model is None else model.head
    payload = {
        "kind": fitted.kind,
        "selected": {key: float(value) for key, value in fitted.selected.items()},
        "num_classes": int(fitted.num_classes),
        "input_dim": int(fitted.input_dim),
        "input_field": fitted.input_field,
        "head": None if head is None else _HEADS[type(head)],
        "scale": float(head.scale) if isinstance(head, CosineHead) else None,
        "state": {} if model is None else state_snapshot(model, "cpu"),
    }
    if fitted.shift is not None:
        payload["shift"] = fitted.shift.detach().to("cpu", torch.float32).clone()
    return payload


def classifier_from_payload(payload: Mapping[str, Any], where: str) -> FittedClassifier:
    """Rebuilds a classifier saved by `classifier_payload` (CPU, eval mode, frozen).

    Args:
        payload: What `classifier_payload` returned, as loaded from a file.
        where: Names the file (and entry) in error messages.

    Raises:
        FeaturesError: one line when the payload is not a classifier of this library.
    """
    try:
        kind, head_name = str(payload["kind"]), payload["head"]
        if kind not in CLASSIFIER_KINDS or head_name not in (None, *_HEADS.values()):
            raise ValueError(f"unknown classifier kind {kind!r} or head {head_name!r}")
        model = None if head_name is None else _probe_from_state(
            head_name, payload["state"], payload["scale"])
        fitted = FittedClassifier(
            kind=kind,
            selected={str(key): float(value) for key, value in payload["selected"].items()},
            model=model,
            num_classes=int(payload["num_classes"]),
            input_dim=int(payload["input_dim"]),
            input_field=str(payload["input_field"]),
            shift=_shift_of(payload.get("shift"), int(payload["num_classes"])),
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FeaturesError(f"{where}: not a saved classifier ({reason})") from None
    if fitted.input_field not in (INPUT_FEATURES, INPUT_LOGITS):
        raise FeaturesError(f"{where}: unknown classifier input {fitted.input_field!r}")
    return fitted


def _shift_of(shift: Any, num_classes: int) -> torch.Tensor | None:
    """A saved score shift checked to be float [C]; None when the payload has none."""
    if shift is None:
        return None
    tensor = torch.as_tensor(shift, dtype=torch.float32)
    if tuple(tensor.shape) != (num_classes,):
        raise ValueError(f"shift of shape {tuple(tensor.shape)}, expected ({num_classes},)")
    return tensor


def _probe_from_state(head_name: str, state: Mapping[str, torch.Tensor], scale: Any) -> Probe:
    weight = state["head.weight"]
    if head_name == "cosine":
        head: nn.Module = CosineHead(weight, float(scale))
    elif head_name == "scaled_linear":
        head = ScaledLinearHead(weight, state["head.bias"])
    else:
        head = LinearHead(weight, state["head.bias"])
    probe = Probe(state["mean"].clone(), state["std"].clone(), head)
    probe.load_state_dict(dict(state))
    probe.eval()
    for parameter in probe.parameters():
        parameter.requires_grad_(False)
    return probe


def linear_map_of(fitted: FittedClassifier) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A linear classifier as (W [C, D], b [C]) on the raw features: the probe's
    head((x - mean) / std) = W x + b with W = W' / std and b = b' - W' (mean / std). None for
    a kind that is not a linear map of the features (cosine, LWS, head).
    """
    model = fitted.model
    if model is None or type(model.head) is not LinearHead:
        return None
    weight = model.head.weight.detach().float() / model.std
    bias = model.head.bias.detach().float() - (model.head.weight.detach().float()
                                                @ (model.mean / model.std))
    return weight, bias
