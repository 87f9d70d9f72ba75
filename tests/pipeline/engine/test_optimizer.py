"""The optimiser of ``train.optim.kind``: SGD (the default, unchanged) or AdamW."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
import torch

from pipeline.engine import EpochRecord, OptimConfig, ScheduleConfig, TrainConfig, train
from pipeline.engine.loop import make_optimizer
from pipeline.errors import ConfigError
from pipeline.methods import CrossEntropy, NoOptions, build_method
from pipeline.models import build_backbone
from tests.pipeline.engine.fakes import NUM_CLASSES, toy_loaders

CPU = torch.device("cpu")
COUNTS = [8, 8, 8]


def toy_ce(seed: int = 0) -> CrossEntropy:
    return build_method("ce", backbone="resnet20", in_channels=1, class_counts=COUNTS, seed=seed)


def run(optim: OptimConfig, epochs: int = 3, seed: int = 0) -> tuple[CrossEntropy, float]:
    method = toy_ce(seed)
    train_loader, val_loader = toy_loaders()
    config = TrainConfig(epochs=epochs, optim=optim, seed=11,
                         schedule=ScheduleConfig(kind="cosine", warmup_epochs=1))
    result = train(method, train_loader, val_loader, config, device=CPU)
    return method, result.best_val_acc


def test_sgd_is_the_default_with_the_configured_settings() -> None:
    optimizer = make_optimizer(toy_ce(), OptimConfig(lr=0.05, momentum=0.8, nesterov=True))
    assert type(optimizer) is torch.optim.SGD
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (
        0.05, 0.8, 5e-4, True)
    assert OptimConfig().kind == "sgd"


def test_adamw_gets_its_betas_eps_and_decoupled_decay() -> None:
    optim = OptimConfig(kind="adamw", lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)
    optimizer = make_optimizer(toy_ce(), optim)
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (
        1e-3, (0.8, 0.99), 1e-6, 0.05)


def test_a_method_group_keeps_its_own_settings_under_adamw() -> None:
    class NoDecayHead(CrossEntropy):
        name: ClassVar[str] = "no_decay_head"

        def parameter_groups(self) -> list[dict]:
            head = list(self.backbone.fc.parameters())
            trunk = [p for n, p in self.backbone.named_parameters() if not n.startswith("fc.")]
            return [{"params": trunk}, {"params": head, "weight_decay": 0.0, "lr_scale": 0.5}]

    backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1, seed=0)
    method = NoDecayHead(backbone, torch.tensor(COUNTS), NoOptions())
    optimizer = make_optimizer(method, OptimConfig(kind="adamw", lr=1e-3, weight_decay=0.05))
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.05, 0.0]
    assert optimizer.param_groups[1]["lr_scale"] == 0.5


def test_adamw_learns_the_toy_task_and_differs_from_sgd() -> None:
    adamw, accuracy = run(OptimConfig(kind="adamw", lr=3e-3, weight_decay=0.01))
    sgd, _ = run(OptimConfig(lr=0.05))
    assert accuracy >= 0.75
    assert not torch.equal(adamw.backbone.fc.weight, sgd.backbone.fc.weight)


class Crash(Exception):
    """Stands in for the process dying after the first epoch's checkpoint was written."""


def crash(record: EpochRecord) -> None:
    if record.epoch == 0:
        raise Crash


def test_adamw_state_resumes_bit_identically(tmp_path: Path) -> None:
    """AdamW's moment estimates go into the checkpoint: a resumed run matches a straight one."""
    config = TrainConfig(epochs=2, optim=OptimConfig(kind="adamw", lr=3e-3), seed=11)
    train_loader, val_loader = toy_loaders()
    straight = toy_ce()
    train(straight, train_loader, val_loader, config, device=CPU)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Crash):
        train(toy_ce(), train_loader, val_loader, config, device=CPU,
              checkpoint_path=checkpoint, on_epoch_end=crash)
    resumed = toy_ce(seed=5)  # weights must come from the checkpoint
    train(resumed, train_loader, val_loader, config, device=CPU, checkpoint_path=checkpoint)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        ({"kind": "adam"}, "kind", "must be one of"),
        ({"betas": (0.9, 0.99)}, "betas", "is AdamW's"),
        ({"eps": 1e-6}, "eps", "is AdamW's"),
        ({"kind": "adamw", "betas": (0.9,)}, "betas", "must list two values"),
        ({"kind": "adamw", "betas": (0.9, 1.0)}, "betas", "must be < 1"),
        ({"kind": "adamw", "eps": 0.0}, "eps", "must be > 0"),
        ({"kind": "adamw", "nesterov": True}, "nesterov", "is SGD's"),
    ],
)
def test_invalid_settings_name_the_field(changes: dict, field: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        OptimConfig(**changes)
    assert caught.value.field == field
