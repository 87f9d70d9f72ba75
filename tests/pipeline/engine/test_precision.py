"""Mixed precision: bf16 autocast trains on the CPU, fp16 is refused there, state is saved."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.engine import TrainConfig, train
from pipeline.engine.checkpoint import read_payload
from pipeline.engine.precision import MixedPrecision
from pipeline.errors import PipelineError
from tests.pipeline.engine.fakes import toy_loaders
from tests.pipeline.engine.test_train import NoisyCrossEntropy, recipe


def test_bf16_autocast_runs_the_forward_pass_in_bf16_and_trains() -> None:
    precision = MixedPrecision("bf16", torch.device("cpu"))
    with precision.autocast():
        product = torch.ones(2, 3) @ torch.ones(3, 2)
    assert product.dtype == torch.bfloat16
    train_loader, val_loader = toy_loaders()
    plain = train(NoisyCrossEntropy(seed=0), train_loader, val_loader, recipe(), device="cpu")
    mixed = train(NoisyCrossEntropy(seed=0), train_loader, val_loader,
                  recipe(precision="bf16"), device="cpu")
    losses = [record.train_loss for record in mixed.history]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert losses != [record.train_loss for record in plain.history]
    assert all(value.dtype != torch.bfloat16 for value in mixed.best_state.values())


def test_fp16_needs_cuda() -> None:
    with pytest.raises(PipelineError, match="fp16 needs a CUDA device"):
        MixedPrecision("fp16", torch.device("cpu"))


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(PipelineError, match="TrainConfig.precision must be one of 'fp32', 'bf16', 'fp16', got 'fp8'"):
        TrainConfig(epochs=1, precision="fp8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 loss scaling runs on CUDA")
def test_fp16_on_cuda_trains_and_checkpoints_its_loss_scale(tmp_path: Path) -> None:
    train_loader, val_loader = toy_loaders()
    checkpoint = tmp_path / "run.pt"
    result = train(NoisyCrossEntropy(seed=0), train_loader, val_loader,
                   recipe(precision="fp16"), device="cuda", checkpoint_path=checkpoint)
    assert all(torch.isfinite(torch.tensor([r.train_loss for r in result.history])))
    assert read_payload(checkpoint)["scaler"]["scale"] > 0
