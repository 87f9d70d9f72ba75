"""A seeded 2-d t-SNE of a class-stratified sample of a bank's rows (the report's scatter)."""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from features.bank.rows import FeatureRows

_MAX_PERPLEXITY = 30.0


def stratified_rows(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted rows of a seeded sample with about the same number of rows from every class.

    Each class gives the same quota of rows (all of its rows when it has fewer), the smallest
    quota that reaches ``size``, so a tail class is as visible as a head class; the draw is
    trimmed to ``size`` by a seeded shuffle.

    Args:
        labels: int [N], each row's class.
        size: Rows wanted.
        seed: Seed of the draw.

    Returns:
        int64 [min(size, N)], distinct row indices, ascending.
    """
    labels = np.asarray(labels, np.int64)
    if size >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    sizes = np.array([len(rows) for rows in members])
    # the smallest per-class quota that reaches `size` once small classes give all they have
    quota = math.ceil(size / len(members))
    while np.minimum(sizes, quota).sum() < size:
        quota += 1
    picked = np.concatenate([rng.permutation(rows)[:quota] for rows in members])
    chosen = rng.permutation(picked)[:size]
    return np.sort(chosen).astype(np.int64)


def tsne_rows(
    x: np.ndarray | FeatureRows, y: np.ndarray, is_tail: np.ndarray, samples: int, seed: int
) -> list[tuple[float, float, int, str]]:
    """2-d t-SNE (PCA init, seeded) of a class-stratified sample of rows.

    Args:
        x: float [N, D], features: an array, or rows read from a bank (only the sample is).
        y: int [N], labels.
        is_tail: bool [C], tail flag of each class.
        samples: Rows to embed; 0 = none.
        seed: Seed of the sample and of t-SNE.

    Returns:
        (x, y, label, "head" | "tail") per sampled row; empty when fewer than 3 rows.
    """
    rows = stratified_rows(y, samples, seed)
    if len(rows) < 3:
        return []
    if isinstance(x, FeatureRows):
        points = x.take(torch.from_numpy(rows)).cpu().numpy().astype(np.float64)
    else:
        points = np.asarray(x[rows], np.float64)
    perplexity = min(_MAX_PERPLEXITY, (len(rows) - 1) / 3)
    # One thread: the Barnes-Hut sums then run in a fixed order (same bytes every run), and
    # OpenMP threads fighting over shared cores made 400 points take 45 s instead of 1.5 s.
    with threadpool_limits(limits=1):
        embedding = TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=perplexity, n_jobs=1
        ).fit_transform(points)
    labels = np.asarray(y)[rows]
    return [
        (float(a), float(b), int(label), "tail" if is_tail[label] else "head")
        for (a, b), label in zip(embedding, labels, strict=True)
    ]
