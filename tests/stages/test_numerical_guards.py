"""A diverging run stops with the stage, epoch and step named, and keeps its last good state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.stages.conftest import tiny_params
from tests.stages.test_dlsa_stage import write_bank


def _run(project: Path, params: dict, *command: str):
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    return CliRunner().invoke(app, list(command))


def test_pretrain_divergence_names_the_stage_epoch_and_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["train"].update(epochs=3, device="cpu", max_grad_norm=None)
    params["train"]["optim"]["lr"] = 1e12
    assert _run(tmp_path, params, "prepare").exit_code == 0
    done = _run(tmp_path, params, "pretrain", "--method", "ce")
    message = done.stderr.strip()
    assert done.exit_code == 2 and "\n" not in message
    assert re.search(r"pretrain ce: non-finite (loss|gradient) at epoch 1/3, step \d+/\d+", message)
    assert "lower optim.lr" in message


def test_classifier_divergence_names_the_stage_kind_epoch_and_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "banks").mkdir()
    write_bank(tmp_path / "banks/ce/seed0.h5")
    params = tiny_params()
    params["classify"].update(kinds=["linear"], lr=1e30, momentum=0.0, device="cpu")
    done = _run(tmp_path, params, "classify", "--method", "ce")
    message = done.stderr.strip()
    assert done.exit_code == 2 and "\n" not in message
    assert re.search(r"classify ce: classifier linear, epoch \d+/3, step \d+: non-finite loss", message)
    assert message.endswith("lower classify.lr")


def test_engine_keeps_the_last_good_checkpoint_when_a_later_epoch_diverges(tmp_path: Path) -> None:
    from pipeline.engine import NonFiniteError, TrainConfig, train
    from pipeline.engine.checkpoint import read_payload
    from tests.pipeline.engine.fakes import toy_loaders
    from tests.pipeline.engine.test_train import NoisyCrossEntropy, recipe

    class DivergesInEpochTwo(NoisyCrossEntropy):
        def training_step(self, images, labels, index):
            output = super().training_step(images, labels, index)
            if int(self.optimizer_steps) >= 3:  # toy loaders: 3 steps per epoch
                return type(output)(loss=output.loss * float("nan"), logits=output.logits)
            return output

    checkpoint = tmp_path / "run.pt"
    train_loader, val_loader = toy_loaders()
    config: TrainConfig = recipe(epochs=3)
    with pytest.raises(NonFiniteError, match="epoch 2/3, step 1/3"):
        train(DivergesInEpochTwo(seed=0), train_loader, val_loader, config, device="cpu",
              checkpoint_path=checkpoint)
    saved = read_payload(checkpoint, "tailbank-train-checkpoint/1", what="checkpoint", fix="-")
    assert saved["next_epoch"] == 1
    assert all(torch.isfinite(value).all() for value in saved["method"].values()
               if value.is_floating_point())
