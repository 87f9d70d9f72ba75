"""How a bank classifier learns: its training rows, minibatch SGD with cosine decay, and
selection of the best val epoch.

All randomness comes from `torch.Generator`s seeded by `ProbeConfig.seed` (one for a head's
initial weights, one for the epochs' row orders), so CPU fits are bit-for-bit repeatable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.progress import Progress, tell
from features.arrays import label_vector
from features.bank.rows import FeatureRows, as_rows, column_moments
from features.classifiers.fitted import FittedClassifier, predict
from features.classifiers.heads import LinearHead, Probe
from features.configs import ProbeConfig
from features.devices import state_snapshot, torch_device
from features.errors import FeaturesError
from features.sampling import class_balanced_order, instance_order

_INIT_STD = 0.01
# Features that are constant on train would otherwise divide by zero when standardised.
_MIN_STD = 1e-6

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def balanced_softmax_loss(
    logits: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor
) -> torch.Tensor:
    """Balanced softmax loss (Ren et al. 2020, Eq. 4), averaged over the batch.

    l(z, y) = -log( n_y exp(z_y) / sum_j n_j exp(z_j) ) = CE(z + log n, y).

    Args:
        logits: float [B, C], z.
        labels: int64 [B], y.
        class_counts: [C], n, training rows per class; a class without rows counts as 1
            so that the loss stays finite.

    Returns:
        Scalar loss.
    """
    log_prior = torch.log(class_counts.to(logits.dtype).clamp(min=1.0))
    return F.cross_entropy(logits + log_prior, labels)


@dataclass
class TrainingData:
    """Train and val rows returned on the training device, labels, and train statistics."""

    train: FeatureRows
    train_y: torch.Tensor
    val: FeatureRows
    val_y: torch.Tensor
    class_counts: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def dim(self) -> int:
        return self.train.dim

    @classmethod
    def build(
        cls,
        train_x: np.ndarray | FeatureRows,
        train_y: np.ndarray,
        val_x: np.ndarray | FeatureRows,
        val_y: np.ndarray,
        class_counts: np.ndarray,
        config: ProbeConfig,
    ) -> TrainingData:
        counts = np.asarray(class_counts)
        if counts.ndim != 1 or len(counts) < 2 or not np.issubdtype(counts.dtype, np.integer):
            raise FeaturesError(
                f"class_counts: expected an integer [C] array with C >= 2, got "
                f"{counts.dtype} {counts.shape}"
            )
        device = torch_device(config.device, "classify.device")
        train = as_rows(train_x, "train_x").to(device)
        val = as_rows(val_x, "val_x", train.dim).to(device)
        train_labels = label_vector(train_y, "train_y", len(train), len(counts))
        val_labels = label_vector(val_y, "val_y", len(val), len(counts))
        if len(train) == 0 or len(val) == 0:
            raise FeaturesError("train_x and val_x must have at least one row each")
        # Statistics of train only: val and test are transformed, never measured.
        mean, std = column_moments(train)
        return cls(
            train=train,
            train_y=torch.from_numpy(train_labels).to(device),
            val=val,
            val_y=torch.from_numpy(val_labels).to(device),
            class_counts=torch.from_numpy(counts.astype(np.int64)).to(device),
            mean=mean.to(torch.float32).cpu(),
            std=std.clamp(min=_MIN_STD).to(torch.float32).cpu(),
            device=device,
        )

    def probe(self, head: nn.Module) -> Probe:
        """``head`` on the train standardisation, on the training device."""
        return Probe(self.mean.clone(), self.std.clone(), head).to(self.device)


def train_probe(
    kind: str,
    probe: Probe,
    data: TrainingData,
    config: ProbeConfig,
    loss_fn: LossFn,
    *,
    balanced: bool,
    epochs: int | None = None,
    progress: Progress | None = None,
) -> FittedClassifier:
    """Minibatch SGD with momentum and cosine lr decay; keeps the best val epoch's state.

    ``progress`` is told ``(kind, epoch, epochs)`` after each epoch (1-based).
    """
    epochs = epochs if epochs is not None else config.epochs
    generator = seeded_generator(config)
    optimizer = torch.optim.SGD(
        [p for p in probe.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    best_epoch, best_accuracy, best_state = 0, -1.0, state_snapshot(probe)
    for epoch in range(epochs):
        _set_lr(optimizer, _cosine_lr(config.lr, epoch, epochs))
        order = _epoch_order(data, balanced, generator)
        _run_epoch(probe, optimizer, loss_fn, data, order.to(data.device), config.batch_size,
                   where=f"classifier {kind}, epoch {epoch + 1}/{epochs}")
        accuracy = val_accuracy(probe, data)
        if accuracy > best_accuracy:
            best_epoch, best_accuracy, best_state = epoch + 1, accuracy, state_snapshot(probe)
        tell(progress, kind, epoch + 1, epochs)
    probe.load_state_dict(best_state)
    return finish(kind, {"epoch": best_epoch, "val_accuracy": best_accuracy}, probe, data)


def _run_epoch(
    probe: Probe,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    data: TrainingData,
    order: torch.Tensor,
    batch_size: int,
    *,
    where: str,
) -> None:
    probe.train()
    for step, (rows, x) in enumerate(data.train.batches(order, batch_size), start=1):
        loss = loss_fn(probe(x), data.train_y[rows])
        check_finite_loss(loss, f"{where}, step {step}", fix="lower classify.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def check_finite_loss(loss: torch.Tensor, where: str, fix: str) -> None:
    """Stop before a NaN or infinite loss reaches the weights; the message says where.

    Args:
        loss: the scalar loss of a step.
        where: what was training, and the epoch and step.
        fix: the advice to give.

    Raises:
        FeaturesError: the loss is not finite.
    """
    if not bool(torch.isfinite(loss)):
        raise FeaturesError(f"{where}: non-finite loss ({float(loss.detach())}); {fix}")


def _epoch_order(data: TrainingData, balanced: bool, generator: torch.Generator) -> torch.Tensor:
    num_rows = len(data.train_y)
    if balanced:
        return class_balanced_order(data.train_y, num_rows, generator)
    return instance_order(num_rows, generator)


def _cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """lr_e = lr / 2 * (1 + cos(pi e / E)) for e = 0 .. E-1."""
    # Not shared with pipeline.engine.schedule.lr_at through core: it rounds cos(pi * (e / E)),
    # this cos(pi * e / E); one function would move some epochs' rate by an ulp (4 of 30).
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def seeded_generator(config: ProbeConfig) -> torch.Generator:
    """A fresh generator at ``config.seed``: each draw site starts from the same state."""
    return torch.Generator().manual_seed(config.seed)


def new_linear_head(data: TrainingData, config: ProbeConfig) -> LinearHead:
    """W ~ N(0, 0.01^2) [C, D] from `seeded_generator`, b = 0 [C]."""
    weight = _INIT_STD * torch.randn(
        data.num_classes, data.dim, generator=seeded_generator(config), dtype=torch.float32
    )
    return LinearHead(weight, torch.zeros(data.num_classes, dtype=torch.float32))


def prior_corrected_loss(data: TrainingData) -> LossFn:
    """`balanced_softmax_loss` with the training rows' class counts bound."""
    counts = data.class_counts

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_loss(logits, labels, counts)

    return loss


def finish(
    kind: str, selected: dict[str, float], probe: Probe, data: TrainingData
) -> FittedClassifier:
    """The chosen probe, moved to the CPU and frozen, as a `FittedClassifier`."""
    probe = probe.to("cpu").eval()
    for parameter in probe.parameters():
        parameter.requires_grad_(False)
    return FittedClassifier(
        kind=kind,
        selected=selected,
        model=probe,
        num_classes=data.num_classes,
        input_dim=data.dim,
    )


def val_accuracy(probe: Probe, data: TrainingData) -> float:
    """Top-1 accuracy of ``probe`` on the val rows."""
    return top1_accuracy(predict(probe, data.val).argmax(dim=1), data.val_y)


def top1_accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of ``pred`` [N] equal to ``labels`` [N], in float64."""
    return float((pred == labels).to(torch.float64).mean())
