"""Shot groups: a class is "many", "medium" or "few"-shot by its training frequency."""

from __future__ import annotations

import numpy as np

SHOT_GROUPS: tuple[str, ...] = ("many", "medium", "few")

MANY_ABOVE = 100
FEW_BELOW = 20


def shot_groups(
    class_counts: np.ndarray, many_above: int = MANY_ABOVE, few_below: int = FEW_BELOW
) -> np.ndarray:
    """Assigns each class to a shot group by its training frequency (Liu et al. 2019).

    The thresholds are not checked here: each library refuses bad ones in its own words.

    Args:
        class_counts: int [C], training samples per class.
        many_above: A class with more than this many samples is "many".
        few_below: A class with fewer than this many samples is "few"; the rest are "medium".

    Returns:
        str [C] (dtype ``<U6``), each one of `SHOT_GROUPS`.
    """
    counts = np.asarray(class_counts)
    groups = np.full(counts.shape, "medium", dtype="<U6")
    groups[counts > many_above] = "many"
    groups[counts < few_below] = "few"
    return groups
