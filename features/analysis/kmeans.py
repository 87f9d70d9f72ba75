"""Spherical k-means of a bank's rows (faiss): cluster purity, sizes, head or tail majorities.

Centroids are fitted on a seeded sample of the L2-normalised rows and every row is then
assigned block by block, so the split never has to be one array in memory. Each cluster is
described by its majority label, that label's share (purity) and whether it is a tail class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from features.analysis.cosine import normalized_rows
from features.analysis.sample import seeded_rows
from features.bank.rows import ArrayRows, FeatureRows
from features.configs import KmeansConfig
from features.errors import FeaturesError
from features.metrics import shot_groups


@dataclass
class ClusterReport:
    """What k-means found, per cluster.

    Attributes:
        sizes: int64 [K], rows per cluster.
        majority: int64 [K], the most frequent label of each cluster (ties: smallest label);
            -1 for an empty cluster.
        majority_count: int64 [K], rows of that label in the cluster.
        class_counts: int [C], training rows per class.
        shot_group: str [C], shot group of each class.
        is_tail: bool [C], count <= tail_max_count.
    """

    sizes: np.ndarray
    majority: np.ndarray
    majority_count: np.ndarray
    class_counts: np.ndarray
    shot_group: np.ndarray
    is_tail: np.ndarray

    @property
    def purity(self) -> np.ndarray:
        """float64 [K], share of the majority label in each cluster; NaN when empty."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.sizes > 0, self.majority_count / self.sizes, np.nan)

    def summary(self) -> dict[str, Any]:
        """Overall purity (majority rows / all rows), sizes, and every cluster's majority."""
        filled = self.majority >= 0
        tail_majorities = self.majority[filled][self.is_tail[self.majority[filled]]]
        clusters = [
            {
                "size": int(size),
                "majority_label": int(label) if label >= 0 else None,
                "purity": purity,
                "majority_group": str(self.shot_group[label]) if label >= 0 else None,
                "majority_is_tail": bool(self.is_tail[label]) if label >= 0 else None,
            }
            for size, label, purity in zip(self.sizes, self.majority, self.purity, strict=True)
        ]
        return {
            "n_clusters": len(self.sizes),
            "purity": float(self.majority_count.sum() / self.sizes.sum()),
            "mean_cluster_purity": float(np.nanmean(self.purity)),
            "sizes_sorted": sorted((int(size) for size in self.sizes), reverse=True),
            "empty_clusters": int((~filled).sum()),
            "tail_majority_clusters": len(tail_majorities),
            "tail_classes": int(self.is_tail.sum()),
            "tail_classes_with_cluster": len(np.unique(tail_majorities)),
            "clusters": clusters,
        }


def kmeans_clusters(
    x: np.ndarray,
    y: np.ndarray,
    class_counts: np.ndarray,
    config: KmeansConfig,
    *,
    tail_max_count: int = 50,
    many_above: int = 100,
    few_below: int = 20,
    chunk_rows: int = 8192,
    use_gpu: bool = False,
) -> ClusterReport:
    """Spherical k-means of in-memory rows (held as float32, like a bank's); see `kmeans_rows`.

    Args:
        x: float [N, D].
        y: int [N], labels in [0, C).
        class_counts: int [C], training rows per class.
        config: k-means settings.
        tail_max_count: A class with at most this many training rows is tail.
        many_above: See `features.metrics.shot_groups`.
        few_below: See `features.metrics.shot_groups`.
        chunk_rows: Rows per block assigned at once.
        use_gpu: Cluster on the GPU.

    Returns:
        The clusters' sizes and majority labels.
    """
    x = np.asarray(x)
    if x.ndim != 2 or len(x) != len(y):
        raise FeaturesError(f"x: expected [N, D] rows with N = len(y) = {len(y)}, got {x.shape}")
    return kmeans_rows(
        ArrayRows(x, "x"),
        np.asarray(y, np.int64),
        class_counts,
        config,
        tail_max_count=tail_max_count,
        many_above=many_above,
        few_below=few_below,
        chunk_rows=chunk_rows,
        use_gpu=use_gpu,
    )


def kmeans_rows(
    rows: FeatureRows,
    labels: np.ndarray,
    class_counts: np.ndarray,
    config: KmeansConfig,
    *,
    tail_max_count: int = 50,
    many_above: int = 100,
    few_below: int = 20,
    chunk_rows: int = 8192,
    use_gpu: bool = False,
) -> ClusterReport:
    """Spherical k-means: centroids fitted on a seeded sample, then every row assigned.

    Args:
        rows: float32 [N, D], the rows to cluster, in memory or read from a bank.
        labels: int64 [N], labels in [0, C).
        class_counts: int [C], training rows per class.
        config: k-means settings.
        tail_max_count: A class with at most this many training rows is tail.
        many_above: See `features.metrics.shot_groups`.
        few_below: See `features.metrics.shot_groups`.
        chunk_rows: Rows per block assigned at once.
        use_gpu: Cluster on the GPU.

    Returns:
        The clusters' sizes and majority labels.
    """
    counts = np.asarray(class_counts)
    num_rows, num_classes = len(labels), len(counts)
    n_clusters = config.n_clusters or num_classes
    if n_clusters > num_rows:
        raise FeaturesError(
            f"KmeansConfig.n_clusters={n_clusters} exceeds the {num_rows} rows to cluster; "
            "set n_clusters lower"
        )
    # at least one row per cluster, even when max_train_rows is set lower
    picked = seeded_rows(num_rows, max(config.max_train_rows, n_clusters), config.seed)
    sample = normalized_rows(rows.take_numpy(picked))
    kmeans = faiss.Kmeans(
        sample.shape[1],
        n_clusters,
        niter=config.niter,
        seed=config.seed,
        spherical=True,
        verbose=False,
        gpu=use_gpu,
        # The sample is already the one we chose: faiss must neither subsample nor warn.
        min_points_per_centroid=1,
        max_points_per_centroid=len(sample),
    )
    kmeans.train(sample, init_centroids=_kmeans_plus_plus(sample, n_clusters, config))
    assigned = np.concatenate(
        [
            kmeans.index.search(normalized_rows(block), 1)[1][:, 0]
            for block in rows.numpy_blocks(chunk_rows)
        ]
    ).astype(np.int64)
    majority, majority_count = _majorities(assigned, labels, n_clusters, num_classes)
    return ClusterReport(
        sizes=np.bincount(assigned, minlength=n_clusters),
        majority=majority,
        majority_count=majority_count,
        class_counts=counts,
        shot_group=shot_groups(counts, many_above, few_below),
        is_tail=counts <= tail_max_count,
    )


def _kmeans_plus_plus(x: np.ndarray, n_clusters: int, config: KmeansConfig) -> np.ndarray:
    """k-means++ seeding: each next centre is a row drawn with probability proportional to
    its squared distance to the nearest centre drawn so far (Arthur & Vassilvitskii 2007).

    Args:
        x: float32 [n, D], the normalised sample, n >= n_clusters.
        n_clusters: K.
        config: Seed and the cap on the rows drawn from.

    Returns:
        float32 [K, D], distinct rows of x.
    """
    # Ours, not sklearn.cluster.kmeans_plusplus (greedy, with 2 + log K trials per centre and a
    # RandomState: other centres, so other clusters) nor faiss's (it has no k-means++ seeding).
    rng = np.random.default_rng(config.seed)
    pool = x[seeded_rows(len(x), config.seeding_rows_per_cluster * n_clusters, config.seed)]
    chosen = [int(rng.integers(len(pool)))]
    nearest = ((pool - pool[chosen[0]]) ** 2).sum(axis=1, dtype=np.float64)
    for _ in range(1, n_clusters):
        cumulative = np.cumsum(nearest)
        if cumulative[-1] > 0:
            pick = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
            pick = min(pick, len(pool) - 1)
        else:  # every row coincides with a centre: any unchosen row will do
            pick = int(np.setdiff1d(np.arange(len(pool)), chosen)[0])
        chosen.append(pick)
        nearest = np.minimum(nearest, ((pool - pool[pick]) ** 2).sum(axis=1, dtype=np.float64))
    return np.ascontiguousarray(pool[chosen])


def _majorities(
    cluster: np.ndarray, labels: np.ndarray, n_clusters: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Most frequent label per cluster and its count, without a [K, C] table."""
    pairs, counts = np.unique(cluster * num_classes + labels, return_counts=True)
    pair_cluster, pair_label = pairs // num_classes, pairs % num_classes
    # Per cluster: largest count first, then smallest label; keep the first of each cluster.
    order = np.lexsort((pair_label, -counts, pair_cluster))
    first = np.ones(len(order), bool)
    first[1:] = pair_cluster[order][1:] != pair_cluster[order][:-1]
    chosen = order[first]
    majority = np.full(n_clusters, -1, np.int64)
    majority_count = np.zeros(n_clusters, np.int64)
    majority[pair_cluster[chosen]] = pair_label[chosen]
    majority_count[pair_cluster[chosen]] = counts[chosen]
    return majority, majority_count
