"""What each DLSA filter does: routing, head/tail separation, clusters, and whether its
cluster-aided classifier beats the base classifiers on the very rows it takes.

Separation accuracy (the paper's Fig. 7): the share of the rows a filter routes that belong to
tail classes (at most `tail_max_count` training rows), against the tail share of the rows that
reach it (a filter routing at random). Routed accuracy: on the rows filter f routes, the
accuracy of its cluster-aided classifier and of each base classifier; a filter helps only where
the first is higher.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from features.arrays import label_vector
from features.classifiers import INPUT_LOGITS
from features.dlsa.cascade import Cascade, Walk
from features.dlsa.model import DLSAModel
from features.dlsa.training import cluster_class_table
from features.errors import FeaturesError

# split name -> (features [N, D], labels [N], the bank's logits [N, C] or None)
Splits = Mapping[str, tuple[Any, np.ndarray, Any]]


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
        routed_accuracy: Per split, on the rows this filter routes: {"cluster_aided": its
            classifier's accuracy, "<base kind>": that base's accuracy} (None without rows).
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
    routed_accuracy: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def filter_report(model: DLSAModel, splits: Splits, class_counts: np.ndarray) -> list[FilterReport]:
    """Routing, head/tail separation, cluster statistics and routed accuracy of each filter.

    Cluster sizes and purity are measured on the "train" split's rows that reach the filter
    (empty lists without a "train" split).

    Args:
        model: A fitted DLSA model.
        splits: Split name -> (features float [N, D] as an array or rows, classes int [N],
            the bank's logits [N, C] or None).
        class_counts: int [C], the bank's training rows per class.

    Returns:
        One report per filter.
    """
    cascade = model.cascade
    counts = np.asarray(class_counts)
    if counts.shape != (cascade.num_classes,):
        raise FeaturesError(
            f"class_counts has shape {counts.shape}, expected ({cascade.num_classes},)"
        )
    is_tail_class = counts <= cascade.config.tail_max_count
    walks, labels, predicted = {}, {}, {}
    for name, (x, y, logits) in splits.items():
        walks[name] = cascade.walk(x)
        labels[name] = label_vector(y, f"{name} labels", len(walks[name].assignment), len(counts))
        predicted[name] = {kind: _base_predictions(base, x, logits)
                           for kind, base in model.bases.items()}
    reports = [
        _report_one(cascade, index, walks, labels, is_tail_class)
        for index in range(len(cascade.filters))
    ]
    for report in reports:
        report.routed_accuracy = {
            name: _routed_accuracy(walks[name], report.index, labels[name], predicted[name])
            for name in splits if name != "train"
        }
    return reports


def _base_predictions(base: Any, x: Any, logits: Any) -> np.ndarray | None:
    inputs = logits if base.input_field == INPUT_LOGITS else x
    return None if inputs is None else base.logits(inputs).argmax(axis=1)


def _routed_accuracy(
    walk: Walk, index: int, labels: np.ndarray, bases: Mapping[str, np.ndarray | None]
) -> dict[str, float | None]:
    routed = walk.assignment == index
    if not routed.any():
        return {"cluster_aided": None, **{kind: None for kind in bases}}
    truth = labels[routed]
    found = {"cluster_aided": float((walk.logits[routed].argmax(axis=1) == truth).mean())}
    for kind, predicted in bases.items():
        found[kind] = None if predicted is None else float((predicted[routed] == truth).mean())
    return found


def _report_one(
    cascade: Cascade,
    index: int,
    walks: dict[str, Walk],
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


