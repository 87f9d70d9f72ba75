"""Shared helpers of the loss-baseline tests: random batches, a tiny training run, and the
hand computations two tests share (class-balanced weights, the focal loss)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from pipeline.engine import OptimConfig, ScheduleConfig, TrainConfig, TrainResult, train
from pipeline.methods import Method, build_method
from tests.pipeline.engine.fakes import toy_loaders

# Long-tailed counts of the toy task's three classes (its loader is balanced; the counts only
# shape the losses' priors, margins and weights).
TOY_COUNTS = [40, 9, 2]


def random_logits(
    rows: int, counts: list[int], seed: int, scale: float = 3.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[rows, C]`` float64 logits and ``[rows]`` labels drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, len(counts), generator=generator, dtype=torch.float64) * scale
    labels = torch.randint(0, len(counts), (rows,), generator=generator)
    return logits, labels


def toy_method(kind: str, options: Mapping[str, Any] | None = None, seed: int = 0) -> Method:
    """Method ``kind`` on a ResNet-20 for the toy task's 1-channel 8x8 images."""
    return build_method(kind, backbone="resnet20", in_channels=1, class_counts=TOY_COUNTS,
                        options=options, seed=seed)


def train_toy(method: Method, epochs: int = 2) -> TrainResult:
    """A short CPU training run of ``method`` on the toy task."""
    train_loader, val_loader = toy_loaders()
    config = TrainConfig(epochs=epochs, optim=OptimConfig(lr=0.05),
                         schedule=ScheduleConfig(kind="cosine"), seed=3)
    return train(method, train_loader, val_loader, config, device=torch.device("cpu"))


def assert_trains(method: Method, epochs: int = 2) -> TrainResult:
    """The run finishes with finite losses and moves the weights."""
    before = {key: value.clone() for key, value in method.state_dict().items()}
    result = train_toy(method, epochs)
    assert [record.epoch for record in result.history] == list(range(epochs))
    assert all(torch.isfinite(torch.tensor(record.train_loss)) for record in result.history)
    after = method.state_dict()
    assert any(not torch.equal(before[key], after[key]) for key in before)
    return result


def weights_by_hand(counts: list[int], beta: float) -> list[float]:
    """w_c = (1 - beta) / (1 - beta^{n_c}), normalised so that sum_c w_c = C."""
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [len(counts) * w / sum(raw) for w in raw]


def focal_by_hand(
    logits: torch.Tensor, labels: torch.Tensor, gamma: float, alpha: list[float] | None = None
) -> float:
    """Eq. 4 (Eq. 5 with alpha) literally: -alpha_t (1 - p_t)^gamma log p_t, averaged."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        p_t = math.exp(row[label]) / sum(math.exp(value) for value in row)
        weight = 1.0 if alpha is None else alpha[label]
        total += -weight * (1 - p_t) ** gamma * math.log(p_t)
    return total / len(labels)
