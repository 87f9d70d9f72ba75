"""Representation statistics of the MBIB paper: D_intra, D_inter, rho (Eq. 15-17) and the
mean positive posterior (Eq. 14), per class and per shot group.

rho = D_intra / D_inter is small when a class's rows lie close together compared with the
distances between class centres; MBIB Tab. 5 compares it across views of one backbone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from features.analysis.groups import class_means, nan_mean
from features.bank.rows import FeatureRows
from features.errors import FeaturesError
from features.metrics import SHOT_GROUPS, shot_groups, softmax

# Logit rows per block of the mean positive posterior, for an array or a bank alike.
POSTERIOR_ROWS = 8192
# Distances held at once by the blocked pairwise sums: 2^22 float64 = 32 MiB.
_BLOCK_ELEMENTS = 1 << 22


@dataclass
class RepresentationStats:
    """Per-class terms of D_intra and D_inter (Eq. 15-16 of the MBIB paper).

    Attributes:
        intra: float64 [C], (1 / |R_i|^2) sum_{j,k} ||r_j - r_k||_2 over all ordered pairs of
            class i's rows, j = k included; NaN for a class without rows.
        inter: float64 [C], (1 / (K - 1)) sum_{j != i} ||c_i - c_j||_2 over the K classes
            with rows; NaN for a class without rows, or when K < 2.
        shot_group: str [C], shot group of each class.
    """

    intra: np.ndarray
    inter: np.ndarray
    shot_group: np.ndarray

    def summary(self) -> dict[str, dict[str, float | None]]:
        """D_intra, D_inter and rho = D_intra / D_inter, overall and per shot group.

        Overall, D_intra (Eq. 15) is the mean of `intra` over the K classes with rows and
        D_inter (Eq. 16) the mean of `inter`, which equals the mean over ordered centre pairs.
        For a group G: D_intra is the mean of `intra` over G's classes, and D_inter the mean
        distance from G's centres to every other centre (not only G's), so that a group of a
        single class is defined and the group terms, weighted by |G|, add up to Eq. 16.
        """
        result = {"overall": _rho_terms(self.intra, self.inter)}
        for group in SHOT_GROUPS:
            mask = self.shot_group == group
            result[group] = _rho_terms(self.intra[mask], self.inter[mask])
        return result


def representation_stats(
    x: np.ndarray | FeatureRows,
    y: np.ndarray,
    class_counts: np.ndarray,
    *,
    many_above: int = 100,
    few_below: int = 20,
) -> RepresentationStats:
    """Intra-class and inter-class distances of raw (not normalised) representations.

    Pairwise distances are summed in row blocks, so memory is O(n_i * D + block) per class,
    never O(n_i^2).

    Args:
        x: float [N, D], representations r: an array, or rows read from a bank on demand
            (then one class's rows are held at a time).
        y: int [N], labels in [0, C).
        class_counts: int [C], training rows per class (defines the shot groups).
        many_above: See `features.metrics.shot_groups`.
        few_below: See `features.metrics.shot_groups`.

    Returns:
        The per-class terms; `summary()` gives D_intra, D_inter and rho.
    """
    if not isinstance(x, FeatureRows):
        x = np.asarray(x, np.float64)
    y = np.asarray(y, np.int64)
    num_classes = len(class_counts)
    shape = (len(x), x.dim) if isinstance(x, FeatureRows) else x.shape
    if len(shape) != 2 or y.shape != (shape[0],):
        raise FeaturesError(f"x: expected [N, D] rows with N = len(y) = {len(y)}, got {shape}")
    order = np.argsort(y, kind="stable")
    sizes = np.bincount(y, minlength=num_classes)
    ends = np.cumsum(sizes)
    present = np.flatnonzero(sizes)
    intra = np.full(num_classes, np.nan)
    centres = np.empty((len(present), shape[1]))
    for slot, label in enumerate(present):
        rows = _rows_of(x, order[ends[label] - sizes[label] : ends[label]])
        intra[label] = pairwise_distance_sums(rows).sum() / len(rows) ** 2
        centres[slot] = rows.mean(axis=0)
    inter = np.full(num_classes, np.nan)
    if len(present) > 1:
        inter[present] = pairwise_distance_sums(centres) / (len(present) - 1)
    return RepresentationStats(intra, inter, shot_groups(class_counts, many_above, few_below))


def _rows_of(x: np.ndarray | FeatureRows, positions: np.ndarray) -> np.ndarray:
    """float64 [n, D] rows at `positions`, from an array or read from a bank."""
    if isinstance(x, FeatureRows):
        return x.take(torch.from_numpy(positions)).cpu().numpy().astype(np.float64)
    return x[positions]


def pairwise_distance_sums(points: np.ndarray) -> np.ndarray:
    """sum_k ||p_j - p_k||_2 for every row j, the j = k term exactly 0, in row blocks.

    Args:
        points: float [n, D].

    Returns:
        float64 [n].
    """
    points = np.asarray(points, np.float64)
    squares = np.einsum("ij,ij->i", points, points)
    step = max(1, _BLOCK_ELEMENTS // max(1, len(points)))
    sums = np.empty(len(points))
    for start in range(0, len(points), step):
        block = points[start : start + step]
        gram = block @ points.T
        distances = np.sqrt(
            np.maximum(squares[start : start + step, None] + squares[None, :] - 2.0 * gram, 0.0)
        )
        local = np.arange(len(block))
        # ||a||^2 + ||a||^2 - 2 a.a is only ~0 in floating point; Eq. 15's j = k term is 0.
        distances[local, start + local] = 0.0
        sums[start : start + step] = distances.sum(axis=1)
    return sums


def _rho_terms(intra: np.ndarray, inter: np.ndarray) -> dict[str, float | None]:
    d_intra = nan_mean(intra)
    d_inter = nan_mean(inter)
    rho = d_intra / d_inter if d_intra is not None and d_inter else None
    return {"d_intra": d_intra, "d_inter": d_inter, "rho": rho}


def mean_positive_posterior(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean softmax probability of the true class over each class's rows (MBIB Eq. 14).

    q_bar(y_i | x) = (1 / n_i) sum_{j=1}^{n_i} q(y_i | x_j); ideally 1.

    Args:
        logits: float [N, C].
        labels: int [N], in [0, C).
        num_classes: C.

    Returns:
        float64 [C], NaN for a class without rows.
    """
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape != (len(labels), num_classes):
        raise FeaturesError(
            f"logits: expected [{len(labels)}, {num_classes}] (rows x classes), got {logits.shape}"
        )
    labels = np.asarray(labels, np.int64)
    # in memory as given (float64 logits stay float64): the softmax is row-wise, so one block
    # gives what blocks of a bank's float32 logits give
    return class_means(_positive_posterior(logits, labels), labels, num_classes)


def posterior_of_rows(logits: FeatureRows, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`mean_positive_posterior` of logits read in blocks of `POSTERIOR_ROWS` rows.

    Args:
        logits: float32 [N, C] rows, e.g. a bank's `<split>/logits`.
        labels: int64 [N], in [0, C).
        num_classes: C.

    Returns:
        float64 [C], NaN for a class without rows.
    """
    positive, start = [], 0
    for block in logits.numpy_blocks(POSTERIOR_ROWS):
        positive.append(_positive_posterior(block, labels[start : start + len(block)]))
        start += len(block)
    return class_means(np.concatenate(positive), labels, num_classes)


def _positive_posterior(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float64 [r], q(y_j | x_j): the softmax probability of each row's own class."""
    return softmax(logits)[np.arange(len(logits)), labels]
