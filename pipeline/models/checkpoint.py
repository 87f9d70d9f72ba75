"""The model checkpoint a trained method is kept in, and how a method is rebuilt from one.

A model checkpoint holds everything needed to rebuild the trained method without any config:
its kind, backbone, input channels, class counts and options, and its weights. It is read
with ``torch.load(weights_only=True)`` (plain values and tensors only), so a crafted file can
fail to load but cannot run code.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pipeline.engine.checkpoint import read_payload
from pipeline.errors import PipelineError
from pipeline.methods import Method, build_method

MODEL_FORMAT = "tailbank-model/1"


def model_payload(
    *,
    method: str,
    kind: str,
    backbone: str,
    in_channels: int,
    dataset: str,
    class_counts: list[int],
    options: Mapping[str, Any],
    seed: int,
    best_epoch: int,
    params_digest: str,
    state: Mapping[str, torch.Tensor],
    teacher: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A trained method as a model checkpoint (the keys, in this order, are the file format).

    Args:
        method: its name (a key of ``methods:``).
        kind: its method kind, for `pipeline.methods.build_method`.
        backbone: its backbone name.
        in_channels: image channels it takes.
        dataset: the dataset it was trained on.
        class_counts: training images per class [C].
        options: the options it was trained with (in a sweep, the chosen value's).
        seed: its training seed.
        best_epoch: the 0-based epoch whose weights are kept.
        params_digest: digest of the params that produced it.
        state: its state dict; copied to the CPU.
        teacher: a distilled student's teacher checkpoint. A student's state already holds
            its teacher's weights, so only the teacher's description is kept, for rebuilding
            its skeleton.
    """
    payload = {
        "format": MODEL_FORMAT,
        "method": method,
        "kind": kind,
        "backbone": backbone,
        "in_channels": in_channels,
        "dataset": dataset,
        "class_counts": class_counts,
        "options": dict(options),
        "seed": seed,
        "best_epoch": best_epoch,
        "params_digest": params_digest,
        "state_dict": {key: value.detach().cpu() for key, value in state.items()},
    }
    if teacher:
        payload["teacher"] = {key: value for key, value in teacher.items()
                              if key != "state_dict"}
    return payload


def load_model_payload(path: Path) -> dict[str, Any]:
    """Read a tailbank model checkpoint, refusing foreign or truncated files in one line.

    Raises:
        PipelineError: the file is unreadable or not a model checkpoint.
    """
    return read_payload(path, MODEL_FORMAT, what="model checkpoint",
                        fix="delete it and re-run its pretrain stage")


def restore_method(payload: Mapping[str, Any], origin: str) -> Method:
    """Rebuild a method from a checkpoint payload; load its weights when the payload has them.

    A distilled student's payload carries its teacher's description (without weights, which
    live in the student's own state): the teacher is rebuilt as a skeleton first.

    Args:
        payload: what `model_payload` made (or its ``teacher`` entry).
        origin: names the checkpoint in the message when its weights do not fit.

    Raises:
        PipelineError: the weights do not fit the architecture the payload names.
    """
    teacher = restore_method(payload["teacher"], origin) if "teacher" in payload else None
    method = build_method(
        payload["kind"],
        backbone=payload["backbone"],
        in_channels=int(payload["in_channels"]),
        class_counts=payload["class_counts"],
        options=payload["options"],
        teacher=teacher,
    )
    if "state_dict" in payload:
        try:
            method.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise PipelineError(
                f"{origin}: its weights do not fit the architecture it names "
                f"({payload['kind']}, {payload['backbone']}: {_first_mismatch(error)}); "
                "re-run its pretrain stage"
            ) from None
    return method


def _first_mismatch(error: RuntimeError) -> str:
    """The first concrete complaint of ``load_state_dict`` (its first line is a heading)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else "state dict mismatch"
    return detail if len(detail) <= 160 else detail[:157] + "..."
