"""Means of per-row and per-class values over all rows or classes and over each shot group.

Shot groups are those of `features.metrics.shot_groups` (many / medium / few by training
count); NaN entries (a query without neighbours, a class without rows) are skipped, and a mean
over nothing is None, which the JSON results write as null.
"""

from __future__ import annotations

import numpy as np

from features.metrics import SHOT_GROUPS, shot_groups


def group_means(
    values: np.ndarray,
    labels: np.ndarray,
    class_counts: np.ndarray,
    many_above: int = 100,
    few_below: int = 20,
) -> dict[str, float | None]:
    """Mean of per-row values over all rows and over the rows of each shot group.

    Args:
        values: float [N], NaN entries are skipped.
        labels: int [N], each row's class.
        class_counts: int [C], training rows per class (defines the groups).
        many_above: See `features.metrics.shot_groups`.
        few_below: See `features.metrics.shot_groups`.

    Returns:
        {"overall", "many", "medium", "few"} -> mean, None for no (non-NaN) rows.
    """
    values = np.asarray(values, np.float64)
    row_group = shot_groups(class_counts, many_above, few_below)[np.asarray(labels, np.int64)]
    means = {"overall": nan_mean(values)}
    means |= {group: nan_mean(values[row_group == group]) for group in SHOT_GROUPS}
    return means


def class_means(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean of per-row values over each class's rows.

    Args:
        values: float [N], NaN entries are skipped.
        labels: int [N] in [0, C).
        num_classes: C.

    Returns:
        float64 [C], NaN for a class without (non-NaN) rows.
    """
    values = np.asarray(values, np.float64)
    keep = ~np.isnan(values)
    labels = np.asarray(labels, np.int64)[keep]
    totals = np.bincount(labels, weights=values[keep], minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def class_group_means(
    per_class: np.ndarray, class_counts: np.ndarray, many_above: int = 100, few_below: int = 20
) -> dict[str, float | None]:
    """Mean of a per-class value over all classes and over each shot group's classes.

    Args:
        per_class: float [C], NaN entries (classes without rows) are skipped.
        class_counts: int [C], training rows per class.
        many_above: See `features.metrics.shot_groups`.
        few_below: See `features.metrics.shot_groups`.

    Returns:
        {"overall", "many", "medium", "few"} -> mean, None when no class counts.
    """
    per_class = np.asarray(per_class, np.float64)
    groups = shot_groups(class_counts, many_above, few_below)
    means = {"overall": nan_mean(per_class)}
    means |= {group: nan_mean(per_class[groups == group]) for group in SHOT_GROUPS}
    return means


def nan_mean(values: np.ndarray) -> float | None:
    """Mean of the non-NaN entries as a Python float; None when there are none."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None
