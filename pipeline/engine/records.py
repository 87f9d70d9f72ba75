"""What a training run remembers: one record per epoch and the best-on-val state so far."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass
class EpochRecord:
    """Curves of one epoch (``epoch`` is 0-based; ``lr`` is that of its last iteration)."""

    epoch: int
    train_loss: float
    train_acc: float
    val_acc: float
    lr: float


@dataclass
class TrainResult:
    """The outcome of :func:`pipeline.engine.train`.

    Attributes:
        best_epoch: 0-based epoch with the highest val accuracy (the earliest on ties).
        best_val_acc: its val accuracy.
        best_state: CPU copy of the method's ``state_dict`` after that epoch.
        history: one record per epoch, in order.
    """

    best_epoch: int
    best_val_acc: float
    best_state: dict[str, Tensor]
    history: list[EpochRecord]


@dataclass
class TrainingProgress:
    """The loop's state between epochs; exactly what a checkpoint stores besides the weights."""

    next_epoch: int = 0
    best_epoch: int = -1
    best_val_acc: float = -1.0
    best_state: dict[str, Tensor] = field(default_factory=dict)
    history: list[EpochRecord] = field(default_factory=list)

    def finish_epoch(self, record: EpochRecord, method: nn.Module) -> None:
        """Append ``record``; keep a CPU copy of ``method`` if its val accuracy is a new best.

        Only a strictly higher accuracy replaces the best, so ties keep the earlier epoch.
        """
        self.history.append(record)
        self.next_epoch = record.epoch + 1
        if record.val_acc > self.best_val_acc:
            self.best_epoch = record.epoch
            self.best_val_acc = record.val_acc
            # a plain dict of tensors: the model file's bytes do not carry module versions
            self.best_state = dict(cpu_copy(method.state_dict()))

    def result(self) -> TrainResult:
        """The run's outcome so far."""
        return TrainResult(
            best_epoch=self.best_epoch,
            best_val_acc=self.best_val_acc,
            best_state=self.best_state,
            history=list(self.history),
        )


def cpu_copy(value: Any) -> Any:
    """Detached CPU copies of every tensor in ``value`` (dicts, lists and tuples walked), never
    aliases of live weights; a state dict stays an OrderedDict with its ``_metadata`` (the
    module versions ``load_state_dict`` reads)."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, OrderedDict):
        copied = OrderedDict((key, cpu_copy(item)) for key, item in value.items())
        metadata = getattr(value, "_metadata", None)
        if metadata is not None:
            copied._metadata = metadata  # type: ignore[attr-defined]
        return copied
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [cpu_copy(item) for item in value]
    if isinstance(value, tuple):
        return tuple(cpu_copy(item) for item in value)
    return value
