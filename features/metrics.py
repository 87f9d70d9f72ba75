"""Evaluation of a classifier's logits: top-1 overall and per shot group, MCC, NMI and ECE."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.special

from core.shots import SHOT_GROUPS
from core.shots import shot_groups as core_shot_groups
from features.errors import FeaturesError


def shot_groups(class_counts: np.ndarray, many_above: int = 100, few_below: int = 20) -> np.ndarray:
    """Assigns each class to a shot group by its training frequency (`core.shots.shot_groups`),
    refusing thresholds that leave no room for "medium".

    Args:
        class_counts: int [C], training samples per class.
        many_above: A class with more than this many samples is "many".
        few_below: A class with fewer than this many samples is "few"; the rest are "medium".

    Returns:
        str [C], each one of `SHOT_GROUPS`.
    """
    counts = np.asarray(class_counts)
    if counts.ndim != 1:
        raise FeaturesError(f"class_counts: expected a [C] array, got shape {counts.shape}")
    if few_below > many_above + 1:
        raise FeaturesError(
            f"few_below={few_below} exceeds many_above={many_above} + 1; "
            "choose few_below <= many_above + 1"
        )
    return core_shot_groups(counts, many_above, few_below)


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Top-1 accuracy (recall) of each class.

    Args:
        pred: int [N], predicted classes.
        labels: int [N], true classes in [0, C).
        num_classes: C.

    Returns:
        float64 [C]; NaN for a class without samples.
    """
    pred, labels = _check_pair(pred, labels, num_classes)
    totals = np.bincount(labels, minlength=num_classes).astype(np.float64)
    hits = np.bincount(labels[pred == labels], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / totals, np.nan)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over equal-width confidence bins (Guo et al. 2017, Eq. 3).

    ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|, where B_m holds the samples whose top
    probability falls in ((m-1)/M, m/M] (the first bin also takes confidence 0).

    Args:
        probs: float [N, C], predicted class probabilities.
        labels: int [N], true classes.
        bins: M, the number of bins.

    Returns:
        The ECE in [0, 1].
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise FeaturesError(f"probs: expected a non-empty [N, C] array, got shape {probs.shape}")
    if bins < 1:
        raise FeaturesError(f"bins must be >= 1, got {bins}")
    _, labels = _check_pair(np.zeros(len(probs), dtype=np.int64), labels, probs.shape[1])
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    # Right-closed bins: a confidence of exactly m/M belongs to bin m, as in Guo et al.
    bin_of = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(bin_of, minlength=bins)
    gap = np.abs(
        np.bincount(bin_of, weights=correct, minlength=bins)
        - np.bincount(bin_of, weights=confidence, minlength=bins)
    )
    return float(gap.sum() / counts.sum())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64.

    Args:
        logits: float [N, C].

    Returns:
        float64 [N, C], rows summing to 1.
    """
    # scipy's softmax shifts by the row maximum as ours did: the same bits in float64
    return scipy.special.softmax(np.asarray(logits, dtype=np.float64), axis=1)


@dataclass
class Evaluation:
    """Scores of one classifier on one split.

    Attributes:
        overall: Top-1 accuracy over all samples.
        many: Top-1 accuracy over the samples of "many"-shot classes (NaN when none).
        medium: Same for "medium"-shot classes.
        few: Same for "few"-shot classes.
        mcc: Matthews correlation coefficient of predictions and labels.
        nmi: Normalised mutual information of labels and predictions.
        ece: Expected calibration error of the softmax probabilities.
        per_class: float [C], per-class accuracy, NaN for a class without samples.
    """

    overall: float
    many: float
    medium: float
    few: float
    mcc: float
    nmi: float
    ece: float
    per_class: np.ndarray

    def summary(self) -> dict[str, float | None]:
        """The seven scalar scores; NaN (an empty group) becomes None, ready for JSON."""
        scores = {
            "overall": self.overall,
            "many": self.many,
            "medium": self.medium,
            "few": self.few,
            "mcc": self.mcc,
            "nmi": self.nmi,
            "ece": self.ece,
        }
        return {name: None if math.isnan(value) else float(value) for name, value in scores.items()}


def evaluate(
    logits: np.ndarray,
    labels: np.ndarray,
    class_counts: np.ndarray,
    *,
    many_above: int = 100,
    few_below: int = 20,
    ece_bins: int = 15,
) -> Evaluation:
    """Scores logits against labels.

    Args:
        logits: float [N, C].
        labels: int [N], true classes in [0, C).
        class_counts: int [C], training samples per class (defines the shot groups).
        many_above: See `shot_groups`.
        few_below: See `shot_groups`.
        ece_bins: Number of equal-width confidence bins of the ECE.

    Returns:
        The scores.
    """
    logits = np.asarray(logits)
    counts = np.asarray(class_counts)
    if logits.ndim != 2 or len(logits) == 0 or counts.shape != (logits.shape[1],):
        raise FeaturesError(
            f"logits: expected a non-empty [N, C] array with C = len(class_counts) = "
            f"{counts.shape}, got {logits.shape}"
        )
    if not np.isfinite(logits).all():
        raise FeaturesError("logits: contain NaN or inf; check the classifier")
    num_classes = logits.shape[1]
    pred, labels = _check_pair(logits.argmax(axis=1), labels, num_classes)
    correct = pred == labels
    sample_group = shot_groups(counts, many_above, few_below)[labels]
    group_accuracy = {
        group: float(correct[sample_group == group].mean())
        if (sample_group == group).any()
        else math.nan
        for group in SHOT_GROUPS
    }
    return Evaluation(
        overall=float(correct.mean()),
        mcc=float(_sklearn_metrics().matthews_corrcoef(labels, pred)),
        nmi=float(_sklearn_metrics().normalized_mutual_info_score(labels, pred)),
        ece=expected_calibration_error(softmax(logits), labels, ece_bins),
        per_class=per_class_accuracy(pred, labels, num_classes),
        **group_accuracy,
    )


def _check_pair(
    pred: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    pred, labels = np.asarray(pred), np.asarray(labels)
    for name, values in (("pred", pred), ("labels", labels)):
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise FeaturesError(
                f"{name}: expected an integer [N] array, got {values.dtype} {values.shape}"
            )
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise FeaturesError(f"{name}: values must lie in [0, {num_classes})")
    if pred.shape != labels.shape:
        raise FeaturesError(f"pred {pred.shape} and labels {labels.shape} differ in length")
    return pred.astype(np.int64), labels.astype(np.int64)


def frequency_confusion(
    predicted: np.ndarray, labels: np.ndarray, class_counts: np.ndarray, bins: int
) -> dict[str, Any]:
    """Confusion between bins of classes sorted by training frequency (DLSA Fig. 1).

    Classes are sorted by count, most frequent first (ties by class index), and cut into
    ``min(bins, C)`` consecutive bins of nearly equal numbers of classes. Entry [a, b] is the
    share of test rows of bin a's classes predicted as a class of bin b, so each row sums to 1
    (0 for a bin without test rows); mass right of the diagonal is head bias.

    Args:
        predicted: int [N], predicted classes.
        labels: int [N], true classes.
        class_counts: int [C], training rows per class.
        bins: Wanted number of bins.

    Returns:
        {"matrix": [B][B] floats, "bins": [{"classes", "min_count", "max_count", "rows"}]}.
    """
    counts = np.asarray(class_counts)
    if bins < 1:
        raise FeaturesError(f"confusion bins must be >= 1, got {bins}")
    order = np.argsort(-counts, kind="stable")
    groups = np.array_split(order, min(bins, len(counts)))
    bin_of = np.empty(len(counts), np.int64)
    for index, members in enumerate(groups):
        bin_of[members] = index
    size = len(groups)
    table = np.zeros((size, size))
    np.add.at(table, (bin_of[np.asarray(labels)], bin_of[np.asarray(predicted)]), 1.0)
    totals = table.sum(axis=1, keepdims=True)
    matrix = np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)
    described = [
        {
            "classes": [int(c) for c in members],
            "min_count": int(counts[members].min()),
            "max_count": int(counts[members].max()),
            "rows": int(totals[index, 0]),
        }
        for index, members in enumerate(groups)
    ]
    return {"matrix": matrix.tolist(), "bins": described}


def _sklearn_metrics() -> Any:
    """scikit-learn's metrics, imported on first use (importing sklearn costs over a second,
    which every command that only validates or reads would pay)."""
    from sklearn import metrics

    return metrics
