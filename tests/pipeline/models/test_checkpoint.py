"""Model checkpoints: the payload's keys, the round trip, and one-line refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.atomic import save_torch_atomically
from pipeline.errors import PipelineError
from pipeline.methods import build_method
from pipeline.models.checkpoint import (
    MODEL_FORMAT,
    load_model_payload,
    model_payload,
    restore_method,
)

COUNTS = [20, 8, 3]


def payload_of(method: torch.nn.Module, **extra: object) -> dict:
    return model_payload(method="ce", kind="ce", backbone="resnet20", in_channels=1,
                         dataset="digits_lt", class_counts=COUNTS, options={}, seed=0,
                         best_epoch=2, params_digest="d" * 64, state=method.state_dict(),
                         **extra)


def test_the_payload_keys_are_the_file_format() -> None:
    method = build_method("ce", backbone="resnet20", in_channels=1, class_counts=COUNTS, seed=0)
    payload = payload_of(method, teacher={"kind": "ce", "state_dict": {}})
    assert list(payload) == ["format", "method", "kind", "backbone", "in_channels", "dataset",
                             "class_counts", "options", "seed", "best_epoch", "params_digest",
                             "state_dict", "teacher"]
    assert payload["format"] == MODEL_FORMAT and "state_dict" not in payload["teacher"]


def test_a_saved_model_is_restored_with_its_weights(tmp_path: Path) -> None:
    method = build_method("ce", backbone="resnet20", in_channels=1, class_counts=COUNTS, seed=0)
    path = tmp_path / "model.pt"
    save_torch_atomically(payload_of(method), path)
    restored = restore_method(load_model_payload(path), str(path))
    for key, value in method.state_dict().items():
        assert torch.equal(restored.state_dict()[key], value)


def test_foreign_files_and_unfitting_weights_are_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_torch_atomically({"format": "other"}, path)
    with pytest.raises(PipelineError, match="not a tailbank model checkpoint"):
        load_model_payload(path)
    method = build_method("ce", backbone="resnet20", in_channels=1, class_counts=COUNTS, seed=0)
    payload = payload_of(method)
    payload["class_counts"] = [5, 5]
    with pytest.raises(PipelineError, match=r"^models/ce/seed0/model.pt: its weights do not fit "
                                            r"the architecture it names \(ce, resnet20: "):
        restore_method(payload, "models/ce/seed0/model.pt")
