"""The DLSA cascade: flow filters routing rows to cluster-aided classifiers (Xu et al. 2022).

Fitting (Sec. 3.2-3.4 of the paper):
    Filter f is trained on the training rows no earlier filter routed. Its routing threshold
    is the (1 - routed_share) quantile of those rows' log-likelihood: the routed_share of
    them with the highest likelihood go to classifier f, the rest go on. The same threshold
    is applied unchanged to val and test rows. Whatever is left after the last filter goes
    to the base classifier, fitted elsewhere (`features.classifiers.fit_classifier`); its
    logits are passed to `Cascade.predict`, so "base" and "base + DLSA" share one base.

Cluster-aided classifier f (Sec. 3.4): logits = FC([x, z]) + FC(P(y | cluster(x))), where x
is the standardised feature, z the flow latent (latent "flow", the paper) or the standardised
feature again (latent "feature", the official code), and P(y | k) the class histogram of the
training rows routed to f whose argmax cluster is k. It is trained with the balanced softmax
loss on the class counts of its routed rows, by SGD at a constant learning rate; the epoch
with the best accuracy on the val rows routed to f is kept, or the last epoch when fewer than
`min_val_rows` val rows reach it (too few to choose on).

Seeds: filter f's flow and classifier use seed + f (`FlowTrainConfig.seed` is replaced).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from features.arrays import float_matrix, label_vector
from features.classifiers import FittedClassifier, balanced_softmax_loss, check_finite_loss
from features.configs import CascadeConfig
from features.devices import state_snapshot, torch_device
from features.errors import FeaturesError
from features.flow_training import (
    EVAL_ROWS,
    cluster_class_table,
    evaluate_flow,
    train_filter,
)
from features.flows import FlowFilter
from features.rows import FeatureRows, as_rows


class ClusterAidedClassifier(nn.Module):
    """logits = FC([x, z]) + FC(P(y | cluster of x)) (Sec. 3.4 of the DLSA paper).

    Args:
        dim: D, feature width.
        latent_dim: Width of z.
        cluster_prior: float [K, C], row k = class histogram (normalised) of the training
            rows routed to this filter whose argmax cluster is k; zeros for an empty cluster.
        mean: float [D], the filter's training mean the features are standardised with.
        std: float [D], the matching standard deviation.
        seed: Seed of the initialisation (the global RNG is left untouched).
    """

    def __init__(
        self,
        dim: int,
        latent_dim: int,
        cluster_prior: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        seed: int,
    ) -> None:
        super().__init__()
        num_classes = cluster_prior.shape[1]
        self.register_buffer("cluster_prior", cluster_prior.detach().clone().float())
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.feature_fc = nn.Linear(dim + latent_dim, num_classes)
            self.prior_fc = nn.Linear(num_classes, num_classes)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std of rows x [N, D]."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, latent: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        """Logits of rows.

        Args:
            x: float [N, D], raw features.
            latent: float [N, latent_dim], z.
            cluster: int64 [N], argmax cluster of each row.

        Returns:
            float [N, C].
        """
        joint = torch.cat([self.standardize(x), latent], dim=1)
        return self.feature_fc(joint) + self.prior_fc(self.cluster_prior[cluster])


@dataclass(frozen=True)
class RoutedPrediction:
    """Where the cascade sends rows and what its classifiers say.

    Attributes:
        logits: float32 [N, C], the cluster-aided classifier's logits of each routed row;
            zeros for the remainder (assignment -1), which the base classifier scores.
        assignment: int64 [N], the filter that routed each row, -1 for the remainder.
    """

    logits: np.ndarray
    assignment: np.ndarray

    def combine(self, base_logits: np.ndarray) -> np.ndarray:
        """Logits of "base + DLSA": these rows' cascade logits, the base's for the remainder.

        Args:
            base_logits: float [N, C], the base classifier's logits of the same rows.

        Returns:
            float32 [N, C].
        """
        base = float_matrix(base_logits, "base_logits", self.logits.shape[1])
        if len(base) != len(self.assignment):
            raise FeaturesError(
                f"base_logits has {len(base)} rows but {len(self.assignment)} were routed; pass "
                "the base classifier's logits of the same rows"
            )
        return np.where((self.assignment >= 0)[:, None], self.logits, base).astype(np.float32)


@dataclass
class _Walk:
    """One pass of rows down the cascade: per filter, the rows it saw and what it said."""

    assignment: np.ndarray
    logits: np.ndarray
    seen: list[np.ndarray]
    clusters: list[np.ndarray]


@dataclass
class Cascade:
    """A fitted DLSA cascade (CPU, eval mode).

    Attributes:
        dim: D, feature width of the bank it was fitted on.
        num_classes: C.
        config: Its hyper-parameters.
        filters: The flow filters, in routing order.
        thresholds: Log-likelihood threshold of each filter: rows at or above it are routed.
        classifiers: The cluster-aided classifier of each filter.
        base_kind: Kind of the base classifier it was fitted with (informative only).
        info: Per filter: "selected_epoch" of the flow, "classifier_epoch",
            "classifier_val_accuracy" (NaN when not chosen on val), "history" of the flow.
    """

    dim: int
    num_classes: int
    config: CascadeConfig
    filters: list[FlowFilter]
    thresholds: list[float]
    classifiers: list[ClusterAidedClassifier]
    base_kind: str
    info: list[dict[str, Any]]

    def check_bank(self, dim: int, num_classes: int, where: str) -> None:
        """Raises FeaturesError unless a bank has this cascade's feature width and classes.

        Args:
            dim: The bank's feature dimension.
            num_classes: The bank's class count.
            where: Names the bank in the message (its path or method).
        """
        if dim != self.dim or num_classes != self.num_classes:
            raise FeaturesError(
                f"{where}: bank has {dim} features and {num_classes} classes but the DLSA "
                f"cascade was fitted on {self.dim} features and {self.num_classes} classes; "
                "refit the cascade on this bank"
            )

    def route(self, x: np.ndarray | FeatureRows) -> RoutedPrediction:
        """Sends rows down the cascade.

        Args:
            x: float [N, D], features of any split: an array, or rows read from a bank in
                blocks (`features.rows`).

        Returns:
            Classifier logits of routed rows and each row's filter (-1: remainder).
        """
        walk = self._walk(x)
        return RoutedPrediction(logits=walk.logits, assignment=walk.assignment)

    def predict(self, x: np.ndarray | FeatureRows, base_logits: np.ndarray) -> np.ndarray:
        """Logits of "base + DLSA": cascade classifiers for routed rows, base for the rest.

        Args:
            x: float [N, D], features.
            base_logits: float [N, C], the base classifier's logits of the same rows.

        Returns:
            float32 [N, C].
        """
        return self.route(x).combine(base_logits)

    @torch.no_grad()
    def _walk(self, x: np.ndarray | FeatureRows) -> _Walk:
        rows = as_rows(x, "x", self.dim).to("cpu")
        assignment = np.full(len(rows), -1, dtype=np.int64)
        logits = np.zeros((len(rows), self.num_classes), dtype=np.float32)
        remaining = np.arange(len(rows))
        seen, clusters = [], []
        for index, (flow, threshold, classifier) in enumerate(
            zip(self.filters, self.thresholds, self.classifiers, strict=True)
        ):
            subset = rows.subset(remaining)
            likelihood, cluster = evaluate_flow(flow, subset)
            routed = (likelihood >= threshold).numpy()
            seen.append(remaining)
            clusters.append(cluster.numpy())
            picked = np.flatnonzero(routed)
            logits[remaining[routed]] = _routed_logits(
                classifier, flow, self.config.latent, subset.subset(picked), cluster[picked]
            ).numpy()
            assignment[remaining[routed]] = index
            remaining = remaining[~routed]
        return _Walk(assignment=assignment, logits=logits, seen=seen, clusters=clusters)


def routing_threshold(log_likelihood: torch.Tensor, routed_share: float) -> float:
    """The (1 - routed_share) quantile of training log-likelihoods, as a routing threshold.

    It is the k-th largest value with k = max(1, round(routed_share * N)), so exactly k rows
    lie at or above it (more only on ties).

    Args:
        log_likelihood: float [N], N >= 1, of the rows the filter was trained on.
        routed_share: Share to route, in (0, 1).

    Returns:
        The threshold.
    """
    if log_likelihood.numel() == 0:
        raise FeaturesError("routing threshold of zero rows; use fewer filters")
    count = min(max(1, round(routed_share * log_likelihood.numel())), log_likelihood.numel())
    return float(torch.sort(log_likelihood, descending=True).values[count - 1])


def cluster_prior(
    clusters: torch.Tensor, labels: torch.Tensor, num_clusters: int, num_classes: int
) -> torch.Tensor:
    """P(y | k): class histogram of each cluster's rows, normalised; zeros for an empty cluster.

    Args:
        clusters: int64 [N], argmax cluster of each routed training row.
        labels: int64 [N], their classes.
        num_clusters: K.
        num_classes: C.

    Returns:
        float32 [K, C].
    """
    table = cluster_class_table(clusters, labels, num_clusters, num_classes).to(torch.float64)
    sizes = table.sum(dim=1, keepdim=True)
    return (table / sizes.clamp(min=1.0)).to(torch.float32)


def fit_cascade(
    train_x: np.ndarray | FeatureRows,
    train_y: np.ndarray,
    val_x: np.ndarray | FeatureRows,
    val_y: np.ndarray,
    class_counts: np.ndarray,
    base: FittedClassifier,
    config: CascadeConfig,
    checkpoint_dir: Path | None = None,
) -> Cascade:
    """Fits the flow filters and cluster-aided classifiers of a DLSA cascade.

    Args:
        train_x: float [N, D], training features: an array, or rows read from a bank on
            demand (`features.rows`), which give the same cascade.
        train_y: int [N], training classes in [0, C).
        val_x: float [M, D], val features (epoch selection only; never test rows).
        val_y: int [M], val classes.
        class_counts: int [C], the bank's training rows per class.
        base: The classifier of the remainder; only its class count is checked here.
        config: Hyper-parameters.
        checkpoint_dir: Folder for per-filter flow checkpoints ("filter<f>.pt"), resumed when
            present; left in place for the caller to delete.

    Returns:
        The fitted cascade, on CPU.
    """
    counts = np.asarray(class_counts)
    num_classes = len(counts)
    train = as_rows(train_x, "train_x")
    val = as_rows(val_x, "val_x", train.dim)
    train_labels = label_vector(train_y, "train_y", len(train), num_classes)
    val_labels = label_vector(val_y, "val_y", len(val), num_classes)
    if base.num_classes != num_classes:
        raise FeaturesError(
            f"base classifier {base.kind!r} has {base.num_classes} classes but class_counts has "
            f"{num_classes}; fit the base on the same bank"
        )
    remaining_train, remaining_val = np.arange(len(train)), np.arange(len(val))
    filters, thresholds, classifiers, info = [], [], [], []
    for index in range(config.num_filters):
        if len(remaining_train) < 2:
            raise FeaturesError(
                f"DLSA filter {index}: only {len(remaining_train)} training rows remain; lower "
                "CascadeConfig.num_filters or routed_share"
            )
        stage = _fit_stage(
            index,
            train.subset(remaining_train),
            train_labels[remaining_train],
            val.subset(remaining_val),
            val_labels[remaining_val],
            counts.astype(np.int64),
            config,
            None if checkpoint_dir is None else Path(checkpoint_dir) / f"filter{index}.pt",
        )
        filters.append(stage.flow)
        thresholds.append(stage.threshold)
        classifiers.append(stage.classifier)
        info.append(stage.info)
        remaining_train = remaining_train[~stage.routed_train]
        remaining_val = remaining_val[~stage.routed_val]
    return Cascade(
        dim=train.dim,
        num_classes=num_classes,
        config=config,
        filters=filters,
        thresholds=thresholds,
        classifiers=classifiers,
        base_kind=base.kind,
        info=info,
    )


@dataclass
class _Stage:
    flow: FlowFilter
    threshold: float
    classifier: ClusterAidedClassifier
    routed_train: np.ndarray
    routed_val: np.ndarray
    info: dict[str, Any]


def _fit_stage(
    index: int,
    train_x: FeatureRows,
    train_y: np.ndarray,
    val_x: FeatureRows,
    val_y: np.ndarray,
    class_counts: np.ndarray,
    config: CascadeConfig,
    checkpoint: Path | None,
) -> _Stage:
    """Filter `index` on the rows that reach it, its threshold, and its classifier.

    n_c of the MLE weights (Eq. 6) are the bank's class counts for every filter: head and
    tail keep their meaning down the cascade, and a class with one row left would otherwise
    get a weight large enough to make the flow diverge.
    """
    num_classes = len(class_counts)
    flow_config = config.filter_config(index)
    trained = train_filter(
        train_x,
        train_y,
        class_counts,
        val_x,
        val_y,
        flow_config,
        name=f"DLSA filter {index}",
        checkpoint=checkpoint,
    )
    flow = trained.flow
    likelihood, clusters = evaluate_flow(flow, train_x.to("cpu"))
    threshold = routing_threshold(likelihood, config.routed_share)
    routed = likelihood >= threshold
    labels = torch.from_numpy(train_y)
    prior = cluster_prior(clusters[routed], labels[routed], flow.num_clusters, num_classes)
    classifier = ClusterAidedClassifier(
        flow.dim, flow.dim, prior, flow.mean, flow.std, seed=config.seed + index
    )
    val_likelihood, val_clusters = evaluate_flow(flow, val_x.to("cpu"))
    routed_val = val_likelihood >= threshold
    with _flow_on(flow, torch_device(config.flow.device, "dlsa.device")):
        selected = _train_classifier(
            classifier,
            flow,
            _Rows(train_x.subset(np.flatnonzero(routed.numpy())), clusters[routed], labels[routed]),
            _Rows(
                val_x.subset(np.flatnonzero(routed_val.numpy())),
                val_clusters[routed_val],
                torch.from_numpy(val_y)[routed_val],
            ),
            num_classes,
            config,
            seed=config.seed + index,
            name=f"DLSA classifier of filter {index}",
        )
    info = {
        "selected_epoch": trained.selected_epoch,
        "history": trained.history,
        **selected,
    }
    return _Stage(flow, threshold, classifier, routed.numpy(), routed_val.numpy(), info)


@dataclass
class _Rows:
    """Rows a classifier sees: raw features, their argmax clusters and classes."""

    x: FeatureRows
    clusters: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> _Rows:
        return _Rows(self.x.to(device), self.clusters.to(device), self.labels.to(device))


@contextlib.contextmanager
def _flow_on(flow: FlowFilter, device: torch.device) -> Iterator[FlowFilter]:
    """The frozen flow on the training device for a classifier's fit, back on the CPU after
    it (the cascade keeps its filters there), also after an error."""
    flow.to(device)
    try:
        yield flow
    finally:
        flow.to("cpu")


def _train_classifier(
    classifier: ClusterAidedClassifier,
    flow: FlowFilter,
    train: _Rows,
    val: _Rows,
    num_classes: int,
    config: CascadeConfig,
    *,
    seed: int,
    name: str,
) -> dict[str, float]:
    """Constant-lr SGD on the balanced softmax loss of the routed rows' class counts.

    Keeps the epoch with the best accuracy on the routed val rows (the earliest on ties), or
    the last epoch when fewer than `config.min_val_rows` val rows are routed here. The latent z
    of each batch is computed from its rows by the frozen flow, so no [N, D] latent array is
    held: the rows may be read from a bank on demand.
    """
    device = torch_device(config.flow.device, "dlsa.device")
    classifier.to(device)
    train, val = train.to(device), val.to(device)
    counts = torch.bincount(train.labels, minlength=num_classes)
    optimizer = torch.optim.SGD(
        classifier.parameters(),
        lr=config.classifier_lr,
        momentum=config.classifier_momentum,
        weight_decay=config.classifier_weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    choose_on_val = len(val.labels) >= max(config.min_val_rows, 1)
    best_epoch, best_accuracy = config.classifier_epochs, math.nan
    best_state = None
    for epoch in range(1, config.classifier_epochs + 1):
        classifier.train()
        order = torch.randperm(len(train.labels), generator=generator)
        batches = train.x.batches(order, config.classifier_batch_size)
        for step, (rows, x) in enumerate(batches, start=1):
            z = _classifier_latent(config.latent, classifier, flow, x)
            logits = classifier(x, z, train.clusters[rows])
            loss = balanced_softmax_loss(logits, train.labels[rows], counts)
            check_finite_loss(
                loss, f"{name}, epoch {epoch}, step {step}", fix="lower dlsa.classifier.lr"
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if choose_on_val:
            accuracy = _accuracy(classifier, flow, config.latent, val)
            if best_state is None or accuracy > best_accuracy:
                best_epoch, best_accuracy = epoch, accuracy
                best_state = state_snapshot(classifier)
    if best_state is not None:
        classifier.load_state_dict(best_state)
    classifier.to("cpu").eval()
    for parameter in classifier.parameters():
        parameter.requires_grad_(False)
    return {"classifier_epoch": best_epoch, "classifier_val_accuracy": best_accuracy}


@torch.no_grad()
def _accuracy(
    classifier: ClusterAidedClassifier, flow: FlowFilter, latent_kind: str, rows: _Rows
) -> float:
    logits = _routed_logits(classifier, flow, latent_kind, rows.x, rows.clusters)
    return float((logits.argmax(dim=1) == rows.labels.cpu()).to(torch.float64).mean())


def _classifier_latent(
    latent_kind: str, classifier: ClusterAidedClassifier, flow: FlowFilter, x: torch.Tensor
) -> torch.Tensor:
    """z of the classifier for rows x [B, D]: the frozen flow's latent [B, D] (eval mode, no
    gradient), or the standardised feature again."""
    if latent_kind == "feature":
        return classifier.standardize(x)
    was_training = flow.training
    flow.eval()
    with torch.no_grad():
        latent = flow(x).latent
    flow.train(was_training)
    return latent


@torch.no_grad()
def _routed_logits(
    classifier: ClusterAidedClassifier,
    flow: FlowFilter,
    latent_kind: str,
    rows: FeatureRows,
    clusters: torch.Tensor,
) -> torch.Tensor:
    """Classifier logits float32 [N, C] (CPU) of routed rows, in blocks of `EVAL_ROWS`.

    Args:
        rows: The N routed rows.
        clusters: int64 [N], their argmax clusters.
    """
    classifier.eval()
    device = classifier.mean.device
    clusters = clusters.to(device)
    blocks = []
    for start, x in zip(range(0, len(rows), EVAL_ROWS), rows.blocks(EVAL_ROWS), strict=True):
        x = x.to(device)
        z = _classifier_latent(latent_kind, classifier, flow, x)
        blocks.append(classifier(x, z, clusters[start : start + len(x)]).cpu())
    if not blocks:
        return torch.zeros(0, classifier.cluster_prior.shape[1])
    return torch.cat(blocks)


@dataclass
class FilterReport:
    """Statistics of one filter of a cascade.

    Attributes:
        index: The filter's position in the cascade.
        threshold: Its log-likelihood threshold.
        routed_share: Per split, the share of all the split's rows this filter routes.
        seen_share: Per split, the share of the split's rows that reach this filter.
        separation_accuracy: Per split, the share of rows routed by this filter that belong
            to tail classes (DLSA Fig. 7; None when it routes no row).
        tail_share_seen: Per split, the tail share of the rows reaching this filter: the
            separation accuracy of a filter routing at random (chance).
        cluster_sizes: Training rows reaching this filter per argmax cluster [K].
        cluster_purity: Share of the largest class in each cluster (None when empty).
        pure_clusters: Clusters with purity > purity_threshold and size > min_cluster_size.
    """

    index: int
    threshold: float
    routed_share: dict[str, float]
    seen_share: dict[str, float]
    separation_accuracy: dict[str, float | None]
    tail_share_seen: dict[str, float | None]
    cluster_sizes: list[int]
    cluster_purity: list[float | None]
    pure_clusters: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def filter_report(
    cascade: Cascade,
    splits: Mapping[str, tuple[np.ndarray | FeatureRows, np.ndarray]],
    class_counts: np.ndarray,
) -> list[FilterReport]:
    """Routing, head/tail separation and cluster statistics of each filter.

    Tail classes have at most `config.tail_max_count` training rows. Cluster sizes and purity
    are measured on the "train" split's rows that reach the filter (empty lists without a
    "train" split).

    Args:
        cascade: A fitted cascade.
        splits: Split name -> (features float [N, D] as an array or rows, classes int [N]).
        class_counts: int [C], the bank's training rows per class.

    Returns:
        One report per filter.
    """
    counts = np.asarray(class_counts)
    if counts.shape != (cascade.num_classes,):
        raise FeaturesError(
            f"class_counts has shape {counts.shape}, expected ({cascade.num_classes},)"
        )
    is_tail_class = counts <= cascade.config.tail_max_count
    walks, labels = {}, {}
    for name, (x, y) in splits.items():
        walks[name] = cascade._walk(x)
        labels[name] = label_vector(y, f"{name} labels", len(walks[name].assignment), len(counts))
    return [
        _report_one(cascade, index, walks, labels, is_tail_class)
        for index in range(len(cascade.filters))
    ]


def _report_one(
    cascade: Cascade,
    index: int,
    walks: dict[str, _Walk],
    labels: dict[str, np.ndarray],
    is_tail_class: np.ndarray,
) -> FilterReport:
    routed_share, seen_share, separation, chance = {}, {}, {}, {}
    for name, walk in walks.items():
        total = max(len(walk.assignment), 1)
        tail = is_tail_class[labels[name]]
        routed = walk.assignment == index
        seen = walk.seen[index]
        routed_share[name] = float(routed.sum() / total)
        seen_share[name] = float(len(seen) / total)
        separation[name] = float(tail[routed].mean()) if routed.any() else None
        chance[name] = float(tail[seen].mean()) if len(seen) else None
    sizes: list[int] = []
    purity: list[float | None] = []
    pure = 0
    if "train" in walks:
        flow_config = cascade.config.flow
        table = cluster_class_table(
            torch.from_numpy(walks["train"].clusters[index]),
            torch.from_numpy(labels["train"][walks["train"].seen[index]]),
            cascade.filters[index].num_clusters,
            cascade.num_classes,
        )
        size_t, largest = table.sum(dim=1), table.max(dim=1).values
        sizes = [int(value) for value in size_t]
        purity = [
            float(big) / float(size) if size else None
            for big, size in zip(largest, size_t, strict=True)
        ]
        pure = int(
            (
                (size_t > flow_config.min_cluster_size)
                & (largest > flow_config.purity_threshold * size_t)
            ).sum()
        )
    return FilterReport(
        index=index,
        threshold=cascade.thresholds[index],
        routed_share=routed_share,
        seen_share=seen_share,
        separation_accuracy=separation,
        tail_share_seen=chance,
        cluster_sizes=sizes,
        cluster_purity=purity,
        pure_clusters=pure,
    )


def cascade_payload(cascade: Cascade) -> dict[str, Any]:
    """A cascade as plain values and tensors (no times or paths: the same cascade gives the
    same bytes), for `features.dlsa_model`'s file; `cascade_from_payload` is the inverse."""
    return {
        "dim": cascade.dim,
        "num_classes": cascade.num_classes,
        "config": cascade.config.to_dict(),
        "base_kind": cascade.base_kind,
        "thresholds": [float(value) for value in cascade.thresholds],
        "filters": [state_snapshot(flow, "cpu") for flow in cascade.filters],
        "classifiers": [state_snapshot(classifier, "cpu") for classifier in cascade.classifiers],
        "info": _canonical(cascade.info),
    }


def cascade_from_payload(payload: dict[str, Any], where: str) -> Cascade:
    """Rebuilds a cascade from `cascade_payload` (CPU, eval mode).

    Raises:
        FeaturesError: one line naming `where` when the payload is damaged.
    """
    try:
        return _cascade_of(payload)
    except (KeyError, TypeError, ValueError, RuntimeError, FeaturesError) as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise FeaturesError(
            f"{where} holds a damaged DLSA cascade ({type(error).__name__}: {reason}); re-run "
            "the dlsa stage"
        ) from None


def _cascade_of(payload: dict[str, Any]) -> Cascade:
    config = CascadeConfig.from_dict(payload["config"])
    dim, num_classes = int(payload["dim"]), int(payload["num_classes"])
    filters, classifiers = [], []
    for index, (flow_state, classifier_state) in enumerate(
        zip(payload["filters"], payload["classifiers"], strict=True)
    ):
        flow_config = config.filter_config(index)
        flow = FlowFilter(
            dim, flow_config.num_clusters, seed=flow_config.seed, sigma=flow_config.sigma
        )
        flow.load_state_dict(flow_state)
        classifier = ClusterAidedClassifier(
            dim,
            dim,
            torch.zeros(flow_config.num_clusters, num_classes),
            torch.zeros(dim),
            torch.ones(dim),
            seed=config.seed + index,
        )
        classifier.load_state_dict(classifier_state)
        for module in (flow, classifier):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        filters.append(flow)
        classifiers.append(classifier)
    return Cascade(
        dim=dim,
        num_classes=num_classes,
        config=config,
        filters=filters,
        thresholds=[float(value) for value in payload["thresholds"]],
        classifiers=classifiers,
        base_kind=str(payload["base_kind"]),
        info=list(payload["info"]),
    )


def _canonical(value: Any) -> Any:
    """A copy whose dict keys are interned strings.

    pickle writes a string once per object, so the same info loaded back from a checkpoint
    (fresh key objects) would otherwise give other bytes than the info of a fresh fit.
    """
    if isinstance(value, dict):
        return {sys.intern(str(key)): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value
