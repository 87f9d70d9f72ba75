"""The DLSA cascade: flow filters routing rows to cluster-aided classifiers (Xu et al. 2022).

Fitting (Sec. 3.2-3.4 of the paper):
    Filter f is trained on the training rows no earlier filter routed. Its routing threshold
    is the (1 - routed_share) quantile of those rows' log-likelihood: the routed_share of
    them with the highest likelihood go to classifier f, the rest go on. The same threshold
    is applied unchanged to val and test rows. What the last filter leaves is classified by a
    remainder classifier (`features.dlsa.fit`), not by the cascade.

The cluster prior P(y | k) of filter f is the class histogram of all the bank's training rows
whose argmax cluster under flow f is k (the paper's "training samples belonging to the
cluster"; the official code counts all training rows too), not only the rows f routes.

Seeds: filter f's flow and classifier use seed + f (`FlowTrainConfig.seed` is replaced).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.progress import Progress, prefixed, tell
from features.arrays import float_matrix, label_vector
from features.bank.rows import FeatureRows, as_rows
from features.configs import CascadeConfig
from features.devices import torch_device
from features.dlsa.classifier import (
    ClusterAidedClassifier,
    LinearMap,
    Rows,
    fit_cluster_aided,
    routed_logits,
)
from features.dlsa.flow import FlowFilter
from features.dlsa.training import cluster_class_table, evaluate_flow, train_filter
from features.errors import FeaturesError


@dataclass(frozen=True)
class RoutedPrediction:
    """Where the cascade sends rows and what its classifiers say.

    Attributes:
        logits: float32 [N, C], the cluster-aided classifier's logits of each routed row;
            zeros for the remainder (assignment -1).
        assignment: int64 [N], the filter that routed each row, -1 for the remainder.
    """

    logits: np.ndarray
    assignment: np.ndarray

    def combine(self, remainder_logits: np.ndarray) -> np.ndarray:
        """Logits of "base + DLSA": the cascade's for routed rows, the remainder's for the rest.

        Args:
            remainder_logits: float [N, C], the remainder classifier's logits of the same rows.

        Returns:
            float32 [N, C].
        """
        rest = float_matrix(remainder_logits, "remainder_logits", self.logits.shape[1])
        if len(rest) != len(self.assignment):
            raise FeaturesError(
                f"remainder logits have {len(rest)} rows but {len(self.assignment)} were routed; "
                "pass the logits of the same rows"
            )
        return np.where((self.assignment >= 0)[:, None], self.logits, rest).astype(np.float32)


@dataclass
class Walk:
    """One pass of rows down the cascade: per filter, the rows it saw and what it said.

    Attributes:
        assignment: int64 [N], the filter that routed each row, -1 for the remainder.
        logits: float32 [N, C], the routing filter's classifier logits (zeros elsewhere).
        seen: Per filter, int64 positions of the rows that reached it.
        clusters: Per filter, int64 argmax cluster of each row that reached it.
    """

    assignment: np.ndarray
    logits: np.ndarray
    seen: list[np.ndarray]
    clusters: list[np.ndarray]

    def truncated(self, filters: int) -> RoutedPrediction:
        """The prediction of the first ``filters`` filters only (rows routed later count as
        remainder)."""
        kept = (self.assignment >= 0) & (self.assignment < filters)
        return RoutedPrediction(np.where(kept[:, None], self.logits, 0).astype(np.float32),
                                np.where(kept, self.assignment, -1))


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
        info: Per filter: "selected_epoch" of the flow, "classifier_epoch",
            "classifier_val_accuracy" (NaN when not chosen on val), "history" of the flow.
    """

    dim: int
    num_classes: int
    config: CascadeConfig
    filters: list[FlowFilter]
    thresholds: list[float]
    classifiers: list[ClusterAidedClassifier]
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

    def route(self, x: np.ndarray | FeatureRows, filters: int | None = None) -> RoutedPrediction:
        """Sends rows down the cascade (its first ``filters`` filters; all when None).

        Args:
            x: float [N, D], features of any split: an array, or rows read from a bank in
                blocks (`features.bank.rows`).
            filters: How many filters route; the rest of the rows are the remainder.

        Returns:
            Classifier logits of routed rows and each row's filter (-1: remainder).
        """
        return self.walk(x).truncated(len(self.filters) if filters is None else filters)

    @torch.no_grad()
    def walk(self, x: np.ndarray | FeatureRows) -> Walk:
        """Rows down every filter, with what each filter saw (for reports and truncation)."""
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
            logits[remaining[routed]] = routed_logits(
                classifier, flow, self.config.latent, subset.subset(picked), cluster[picked]
            ).numpy()
            assignment[remaining[routed]] = index
            remaining = remaining[~routed]
        return Walk(assignment=assignment, logits=logits, seen=seen, clusters=clusters)


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
        clusters: int64 [N], argmax cluster of each training row.
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
    config: CascadeConfig,
    initial: LinearMap | None = None,
    checkpoint_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[Cascade, list[np.ndarray], list[np.ndarray]]:
    """Fits the flow filters and cluster-aided classifiers of a DLSA cascade.

    Args:
        train_x: float [N, D], training features: an array, or rows read from a bank on
            demand (`features.bank.rows`), which give the same cascade.
        train_y: int [N], training classes in [0, C).
        val_x: float [M, D], val features (epoch selection only; never test rows).
        val_y: int [M], val classes.
        class_counts: int [C], the bank's training rows per class.
        config: Hyper-parameters.
        initial: The linear classifier each cluster-aided classifier's x part starts from.
        checkpoint_dir: Folder for per-filter flow checkpoints ("filter<f>.pt"), resumed when
            present; left in place for the caller to delete.
        progress: Told each epoch of filter f's flow ("filter f/F flow") and cluster-aided
            classifier ("filter f/F classifier").

    Returns:
        The cascade (CPU), and per number of filters n = 0..F the positions of the training
        rows and of the val rows that the first n filters leave (the remainders).
    """
    counts = np.asarray(class_counts)
    num_classes = len(counts)
    train = as_rows(train_x, "train_x")
    val = as_rows(val_x, "val_x", train.dim)
    train_labels = label_vector(train_y, "train_y", len(train), num_classes)
    val_labels = label_vector(val_y, "val_y", len(val), num_classes)
    remaining_train, remaining_val = np.arange(len(train)), np.arange(len(val))
    left_train, left_val = [remaining_train], [remaining_val]
    filters, thresholds, classifiers, info = [], [], [], []
    for index in range(config.num_filters):
        if len(remaining_train) < 2:
            raise FeaturesError(
                f"DLSA filter {index}: only {len(remaining_train)} training rows remain; lower "
                "CascadeConfig.num_filters or routed_share"
            )
        stage = _fit_stage(
            index, train, train_labels, remaining_train, val.subset(remaining_val),
            val_labels[remaining_val], counts.astype(np.int64), config, initial,
            None if checkpoint_dir is None else Path(checkpoint_dir) / f"filter{index}.pt",
            prefixed(progress, f"filter {index + 1}/{config.num_filters}"),
        )
        filters.append(stage.flow)
        thresholds.append(stage.threshold)
        classifiers.append(stage.classifier)
        info.append(stage.info)
        remaining_train = remaining_train[~stage.routed_train]
        remaining_val = remaining_val[~stage.routed_val]
        left_train.append(remaining_train)
        left_val.append(remaining_val)
    cascade = Cascade(dim=train.dim, num_classes=num_classes, config=config, filters=filters,
                      thresholds=thresholds, classifiers=classifiers, info=info)
    return cascade, left_train, left_val


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
    train: FeatureRows,
    train_y: np.ndarray,
    reaching: np.ndarray,
    val_x: FeatureRows,
    val_y: np.ndarray,
    class_counts: np.ndarray,
    config: CascadeConfig,
    initial: LinearMap | None,
    checkpoint: Path | None,
    progress: Progress | None = None,
) -> _Stage:
    """Filter `index` on the training rows that reach it (positions ``reaching`` of
    ``train``), its threshold, its cluster prior over all training rows, and its classifier.

    n_c of the MLE weights (Eq. 6) are the bank's class counts for every filter: head and
    tail keep their meaning down the cascade, and a class with one row left would otherwise
    get a weight large enough to make the flow diverge.
    """
    num_classes = len(class_counts)
    flow_config = config.filter_config(index)
    train_x = train.subset(reaching)
    trained = train_filter(
        train_x,
        train_y[reaching],
        class_counts,
        val_x,
        val_y,
        flow_config,
        name=f"DLSA filter {index}",
        checkpoint=checkpoint,
        on_epoch=lambda epoch, _: tell(progress, "flow epoch", epoch, flow_config.epochs),
    )
    flow = trained.flow
    all_likelihood, all_clusters = evaluate_flow(flow, train.to("cpu"))
    likelihood, clusters = all_likelihood[reaching], all_clusters[reaching]
    threshold = routing_threshold(likelihood, config.routed_share)
    routed = likelihood >= threshold
    labels = torch.from_numpy(train_y[reaching])
    prior = cluster_prior(all_clusters, torch.from_numpy(train_y), flow.num_clusters, num_classes)
    classifier = ClusterAidedClassifier(
        flow.dim, flow.dim, prior, flow.mean, flow.std, seed=config.seed + index, initial=initial
    )
    val_likelihood, val_clusters = evaluate_flow(flow, val_x.to("cpu"))
    routed_val = val_likelihood >= threshold
    with _flow_on(flow, config):
        selected = fit_cluster_aided(
            classifier,
            flow,
            Rows(train_x.subset(np.flatnonzero(routed.numpy())), clusters[routed], labels[routed]),
            Rows(val_x.subset(np.flatnonzero(routed_val.numpy())), val_clusters[routed_val],
                 torch.from_numpy(val_y)[routed_val]),
            num_classes,
            config,
            seed=config.seed + index,
            name=f"DLSA classifier of filter {index}",
            started=initial is not None,
            progress=prefixed(progress, "classifier"),
        )
    info = {
        "selected_epoch": trained.selected_epoch,
        "history": trained.history,
        "init": initial.source if initial is not None else "random",
        **selected,
    }
    return _Stage(flow, threshold, classifier, routed.numpy(), routed_val.numpy(), info)


@contextlib.contextmanager
def _flow_on(flow: FlowFilter, config: CascadeConfig) -> Iterator[FlowFilter]:
    """The frozen flow on the training device for a classifier's fit, back on the CPU after
    it (the cascade keeps its filters there), also after an error."""
    flow.to(torch_device(config.flow.device, "dlsa.device"))
    try:
        yield flow
    finally:
        flow.to("cpu")
