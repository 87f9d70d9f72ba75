"""Training one DLSA flow filter (Xu et al., ECCV 2022, Sec. 3.3 and supplement Sec. 5).

The filter minimises L_MLE + lambda_bal L_bal + lambda_pure L_pure (Eq. 11) by minibatch SGD
at a constant learning rate, lr / m by default: m, the expected sum of Eq. 7's weights over a
batch, makes lr a step per unit of likelihood weight that carries over between banks (see
`FlowTrainConfig.lr`; at the paper's fixed 0.2 a 10-class bank takes ~100 times the paper's
steps and the flow's latents reach 1e6 within a few epochs). Rows are standardised with the
training mean and std, which the filter stores as buffers (the flow's first, fixed affine
layer), so any bank's feature scale suits the learning rate and the centre spread sigma.
After every epoch the filter is scored on the val rows and the best epoch's state is kept:

    "purity"      most clusters with purity > purity_threshold holding > min_cluster_size val
                  rows by argmax cluster (the official selection rule, moved from the test
                  split to val); ties go to the higher mean val log-likelihood.
    "likelihood"  highest mean val log-likelihood.

Without val rows the last epoch is kept. All randomness comes from `FlowTrainConfig.seed`;
an optional per-epoch checkpoint lets an interrupted training resume with identical results.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.atomic import save_torch_atomically
from features.arrays import label_vector
from features.bank.rows import ArrayRows, FeatureRows, as_rows, column_moments
from features.configs import FlowTrainConfig
from features.devices import state_snapshot, torch_device
from features.dlsa.flow import FlowFilter, FlowOutput
from features.dlsa.losses import (
    ClusterBalance,
    expected_batch_weight,
    flow_objective,
    purity_loss,
    purity_pairs,
    weighted_mle_loss,
)
from features.errors import FeaturesError

CHECKPOINT_FORMAT = "tailbank-dlsa-flow-checkpoint/1"
# Rows per scoring block: a constant, so scores do not depend on where the rows are held.
EVAL_ROWS = 4096
# Features that are constant on train would otherwise divide by zero when standardised.
_MIN_STD = 1e-6

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainedFilter:
    """A trained flow filter and how it got there.

    Attributes:
        flow: The filter of the selected epoch, in eval mode, on CPU, frozen.
        selected_epoch: 1-based epoch whose state `flow` holds.
        history: One record per epoch: "epoch", "loss", "mle", "balance", "purity" (means
            over the epoch's steps), "val_log_likelihood" (mean), "val_pure_clusters".
    """

    flow: FlowFilter
    selected_epoch: int
    history: list[dict[str, float]]


@dataclass
class _Data:
    train: FeatureRows
    train_y: torch.Tensor
    val: FeatureRows
    val_y: torch.Tensor
    class_counts: torch.Tensor

    def to(self, device: torch.device) -> _Data:
        return _Data(self.train.to(device), self.train_y.to(device), self.val.to(device),
                     self.val_y.to(device), self.class_counts.to(device))


def train_filter(
    train_x: np.ndarray | FeatureRows,
    train_y: np.ndarray,
    class_counts: np.ndarray,
    val_x: np.ndarray | FeatureRows,
    val_y: np.ndarray,
    config: FlowTrainConfig,
    *,
    name: str,
    on_epoch: EpochCallback | None = None,
    checkpoint: Path | None = None,
) -> TrainedFilter:
    """Trains one flow filter, keeping the best val epoch.

    Args:
        train_x: float [N, D], the rows the filter is trained on: an array, or rows read from
            a bank on demand (`features.bank.rows`), which give the same filter.
        train_y: int [N], their classes in [0, C).
        class_counts: int [C], n_c of the MLE weights (Eq. 6); normally the counts of train_y.
        val_x: float [M, D], val rows the epoch is chosen on (M may be 0), array or rows.
        val_y: int [M], their classes.
        config: Hyper-parameters.
        name: Names the filter in errors ("filter 2 of bank ce").
        on_epoch: Called after each epoch with its 1-based number and history record.
        checkpoint: File for a per-epoch checkpoint; an existing one of the same config and
            data shape is resumed, one of another is trained over. It is left in place: the
            caller deletes it.

    Returns:
        The filter of the selected epoch and the per-epoch history.
    """
    device = torch_device(config.device, "dlsa.device")
    data = _prepare(train_x, train_y, class_counts, val_x, val_y, config).to(device)
    flow = FlowFilter(data.train.dim, config.num_clusters, seed=config.seed, sigma=config.sigma,
                      affine=config.affine)
    mean, std = column_moments(data.train)
    flow.set_standardization(mean.to(torch.float32).cpu(),
                             std.clamp(min=_MIN_STD).to(torch.float32).cpu())
    flow.to(device)
    state = _TrainState.fresh(flow, config, data.class_counts)
    if checkpoint is not None and checkpoint.exists():
        state.load(checkpoint, _fingerprint(name, config, data))
    for epoch in range(state.epoch + 1, config.epochs + 1):
        record = _run_epoch(state, data, config, name, epoch)
        state.finish_epoch(epoch, record, _score(record, config))
        if checkpoint is not None:
            state.save(checkpoint, _fingerprint(name, config, data))
        if on_epoch is not None:
            on_epoch(epoch, record)
    flow.load_state_dict(state.best_state)
    flow = flow.to("cpu").eval()
    for parameter in flow.parameters():
        parameter.requires_grad_(False)
    return TrainedFilter(flow=flow, selected_epoch=state.best_epoch, history=state.history)


@torch.no_grad()
def evaluate_flow(
    flow: FlowFilter, x: torch.Tensor | np.ndarray | FeatureRows
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-likelihood and argmax cluster of rows, in eval mode and in blocks of `EVAL_ROWS`.

    Args:
        flow: A flow filter (switched to eval mode).
        x: float [N, D]: a tensor, an array or rows (`features.bank.rows`).

    Returns:
        (log_likelihood float [N], cluster int64 [N]), on the flow's device.
    """
    flow.eval()
    rows = x if isinstance(x, FeatureRows) else ArrayRows(x)
    device = flow.mean.device
    likelihoods, clusters = [], []
    for block in rows.blocks(EVAL_ROWS):
        out = flow(block.to(device))
        likelihoods.append(out.log_likelihood)
        clusters.append(out.log_posterior.argmax(dim=1))
    if not likelihoods:
        return torch.zeros(0, device=device), torch.zeros(0, dtype=torch.int64, device=device)
    return torch.cat(likelihoods), torch.cat(clusters)


def pure_cluster_count(
    clusters: torch.Tensor,
    labels: torch.Tensor,
    num_clusters: int,
    num_classes: int,
    *,
    purity_threshold: float,
    min_cluster_size: int,
) -> int:
    """Clusters holding more than min_cluster_size rows whose largest class exceeds the threshold.

    Purity(k) is the share of cluster k's rows in its largest class (Sec. 3.3).

    Args:
        clusters: int64 [N], argmax cluster of each row.
        labels: int64 [N], class of each row.
        num_clusters: K.
        num_classes: C.
        purity_threshold: Purity a cluster must exceed.
        min_cluster_size: Rows a cluster must exceed.

    Returns:
        The number of such clusters.
    """
    table = cluster_class_table(clusters, labels, num_clusters, num_classes)
    sizes = table.sum(dim=1)
    largest = table.max(dim=1).values
    pure = (sizes > min_cluster_size) & (largest > purity_threshold * sizes)
    return int(pure.sum())


def cluster_class_table(
    clusters: torch.Tensor, labels: torch.Tensor, num_clusters: int, num_classes: int
) -> torch.Tensor:
    """Rows per (cluster, class).

    Args:
        clusters: int64 [N] in [0, K).
        labels: int64 [N] in [0, C).
        num_clusters: K.
        num_classes: C.

    Returns:
        int64 [K, C].
    """
    flat = clusters.to("cpu", torch.int64) * num_classes + labels.to("cpu", torch.int64)
    return torch.bincount(flat, minlength=num_clusters * num_classes).view(
        num_clusters, num_classes
    )


class _TrainState:
    """Everything an epoch changes, so that a checkpoint can restore it exactly."""

    def __init__(
        self,
        flow: FlowFilter,
        optimizer: torch.optim.Optimizer,
        balance: ClusterBalance,
        generator: torch.Generator,
    ) -> None:
        self.flow = flow
        self.optimizer = optimizer
        self.balance = balance
        self.generator = generator
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.best_score: tuple[float, float] = (-math.inf, -math.inf)
        self.best_state = state_snapshot(flow)

    @classmethod
    def fresh(cls, flow: FlowFilter, config: FlowTrainConfig, class_counts: torch.Tensor
              ) -> _TrainState:
        optimizer = torch.optim.SGD(
            flow.parameters(),
            lr=sgd_learning_rate(config, class_counts),
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
        balance = ClusterBalance(config.num_clusters, config.eta)
        # Offset from the flow's own seed: the batch order must not replay the init draws.
        generator = torch.Generator().manual_seed(config.seed + 1)
        return cls(flow, optimizer, balance, generator)

    def finish_epoch(
        self, epoch: int, record: dict[str, float], score: tuple[float, float]
    ) -> None:
        self.epoch = epoch
        self.history.append(record)
        # >= keeps the later epoch on ties, so without val rows the last epoch wins.
        if score >= self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_state = state_snapshot(self.flow)

    def save(self, path: Path, fingerprint: dict[str, Any]) -> None:
        save_torch_atomically(
            {
                "format": CHECKPOINT_FORMAT,
                "fingerprint": fingerprint,
                "epoch": self.epoch,
                "flow": state_snapshot(self.flow, "cpu"),
                "optimizer": _to_cpu(self.optimizer.state_dict()),
                "balance": self.balance.state_dict(),
                "generator": self.generator.get_state(),
                "history": self.history,
                "best_epoch": self.best_epoch,
                "best_score": list(self.best_score),
                "best_state": _to_cpu(self.best_state),
            },
            path,
        )

    def load(self, path: Path, fingerprint: dict[str, Any]) -> None:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise FeaturesError(
                f"flow checkpoint {path} cannot be read ({type(error).__name__}); delete it to "
                "train from scratch"
            ) from error
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise FeaturesError(
                f"{path} is not a flow checkpoint ({CHECKPOINT_FORMAT}); delete it to train "
                "from scratch"
            )
        if payload["fingerprint"] != fingerprint:
            return  # left by a run of another config or other rows: train afresh over it
        device = next(self.flow.parameters()).device
        self.flow.load_state_dict(payload["flow"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.balance.load_state_dict(payload["balance"])
        self.generator.set_state(payload["generator"])
        self.epoch = int(payload["epoch"])
        # Interned keys: a resumed history then pickles to the same bytes as a fresh one.
        self.history = [
            {sys.intern(key): value for key, value in record.items()}
            for record in payload["history"]
        ]
        self.best_epoch = int(payload["best_epoch"])
        self.best_score = (float(payload["best_score"][0]), float(payload["best_score"][1]))
        self.best_state = {key: value.to(device) for key, value in payload["best_state"].items()}


def _run_epoch(
    state: _TrainState, data: _Data, config: FlowTrainConfig, name: str, epoch: int
) -> dict[str, float]:
    """One pass over the training rows in a seeded order; returns the epoch's record."""
    flow, generator = state.flow, state.generator
    flow.train()
    order = epoch_order(data.train_y, config.mle_sampler, generator)
    sums = {"loss": 0.0, "mle": 0.0, "balance": 0.0, "purity": 0.0}
    steps = 0
    for step, (rows, x) in enumerate(data.train.batches(order, config.batch_size), start=1):
        # BatchNorm needs two rows for a batch variance; a lone last row waits for next epoch.
        if len(rows) < 2:
            continue
        loss, parts = step_objective(flow(x), data.train_y[rows], data.class_counts, config,
                                     state.balance, generator)
        if not torch.isfinite(loss):
            raise FeaturesError(
                f"flow filter {name!r}: non-finite loss at epoch {epoch} step {step}; lower "
                "the flow's learning rate (lr) or check the features for extreme values"
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        steps += 1
        sums["loss"] += float(loss.detach())
        for part, value in parts.items():
            sums[part] += float(value.detach())
    record = {"epoch": float(epoch)}
    record.update({part: total / max(steps, 1) for part, total in sums.items()})
    record.update(_validate(flow, data, config))
    return record


def sgd_learning_rate(config: FlowTrainConfig, class_counts: torch.Tensor) -> float:
    """The SGD rate: lr / m with ``lr_scale: weight`` (m from `expected_batch_weight`), else
    lr as given."""
    if config.lr_scale == "none":
        return config.lr
    q = config.q if config.weighted_mle else 0.0
    return config.lr / expected_batch_weight(class_counts, q, config.mle, config.mle_sampler,
                                             config.batch_size)


def step_objective(
    out: FlowOutput,
    labels: torch.Tensor,
    class_counts: torch.Tensor,
    config: FlowTrainConfig,
    balance: ClusterBalance,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_total of one batch (Eq. 11) and its parts; advances the balance estimate one step.

    Args:
        out: The flow's output on the batch's B rows.
        labels: int64 [B], their classes.
        class_counts: int64 [C], n_c of the MLE weights (Eq. 6).
        config: Which losses are on, q, the MLE form and the lambdas.
        balance: The running cluster estimate of Eq. 9.
        generator: Draws the purity pairs.

    Returns:
        (L_total, {"mle", "balance" when on, "purity" when on}).
    """
    q = config.q if config.weighted_mle else 0.0
    parts = {"mle": weighted_mle_loss(out.log_likelihood, labels, class_counts, q, config.mle)}
    if config.use_balance:
        parts["balance"] = balance(out.log_posterior)
    if config.use_purity:
        i, j = purity_pairs(labels, generator)
        parts["purity"] = purity_loss(out.log_posterior, i, j)
    total = flow_objective(parts["mle"], parts.get("balance"), parts.get("purity"),
                           config.lambda_bal, config.lambda_pure)
    return total, parts


def epoch_order(labels: torch.Tensor, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """The rows of one epoch: a permutation ("instance"), or as many draws as rows, each a
    class drawn uniformly among the classes present and then one of its rows ("class_uniform",
    the official sampler).

    Args:
        labels: int64 [N], classes of the rows.
        sampler: "instance" or "class_uniform".
        generator: CPU generator of the draws.

    Returns:
        int64 [N], row positions.
    """
    labels = labels.to("cpu")
    if sampler == "instance":
        return torch.randperm(len(labels), generator=generator)
    rows_by_class = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[rows_by_class], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    drawn = torch.randint(len(classes), (len(labels),), generator=generator)
    offsets = (torch.rand(len(labels), generator=generator, dtype=torch.float64)
               * counts[drawn]).long().clamp(max=counts[drawn] - 1)
    return rows_by_class[starts[drawn] + offsets]


def _validate(flow: FlowFilter, data: _Data, config: FlowTrainConfig) -> dict[str, float]:
    if len(data.val_y) == 0:
        return {"val_log_likelihood": math.nan, "val_pure_clusters": 0.0}
    likelihood, clusters = evaluate_flow(flow, data.val)
    pure = pure_cluster_count(
        clusters,
        data.val_y,
        config.num_clusters,
        len(data.class_counts),
        purity_threshold=config.purity_threshold,
        min_cluster_size=config.min_cluster_size,
    )
    return {"val_log_likelihood": float(likelihood.mean()), "val_pure_clusters": float(pure)}


def _score(record: dict[str, float], config: FlowTrainConfig) -> tuple[float, float]:
    likelihood = record["val_log_likelihood"]
    if math.isnan(likelihood):
        return (-math.inf, -math.inf)
    if config.selection == "likelihood":
        return (likelihood, 0.0)
    return (record["val_pure_clusters"], likelihood)


def _prepare(
    train_x: np.ndarray | FeatureRows,
    train_y: np.ndarray,
    class_counts: np.ndarray,
    val_x: np.ndarray | FeatureRows,
    val_y: np.ndarray,
    config: FlowTrainConfig,
) -> _Data:
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or (counts < 0).any():
        raise FeaturesError(
            f"class_counts: expected non-negative integer [C] counts, got {counts.dtype} "
            f"{counts.shape}"
        )
    train = as_rows(train_x, "train_x")
    val = as_rows(val_x, "val_x", train.dim)
    train_labels = label_vector(train_y, "train_y", len(train), len(counts))
    val_labels = label_vector(val_y, "val_y", len(val), len(counts))
    if len(train) < 2:
        raise FeaturesError(
            f"a flow filter needs at least 2 training rows, got {len(train)}; use fewer filters"
        )
    return _Data(
        train=train,
        train_y=torch.from_numpy(train_labels),
        val=val,
        val_y=torch.from_numpy(val_labels),
        class_counts=torch.from_numpy(counts.astype(np.int64)),
    )


def _fingerprint(name: str, config: FlowTrainConfig, data: _Data) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the config and the shape of the rows."""
    return {
        "name": name,
        "config": repr(config),
        "train_shape": [len(data.train), data.train.dim],
        "val_shape": [len(data.val), data.val.dim],
        "train_label_sum": int(data.train_y.sum()),
    }


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return copy.deepcopy(value)
