"""Results of several training seeds folded into one: means with 95 % intervals.

An accuracy (overall, many, medium, few) of S seeds is reported as its mean with
- S = 1: the stratified bootstrap interval over the test rows (`features.uncertainty`);
- S >= 2: the Student-t interval of the S per-seed values (wide with S = 2: t = 12.71).
A DLSA gain (base + DLSA minus base) likewise: the paired bootstrap over the rows with one
seed, the t interval of the per-seed gains with more. Other numbers (MCC, NMI, ECE, feature
statistics) are averaged over the seeds without an interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from features.comparison import SeededPredictions, class_groups
from features.uncertainty import Interval, bootstrap_interval, paired_bootstrap, t_interval

ACCURACY_COLUMNS = ("overall", "many", "medium", "few")


def mean_tree(trees: Sequence[Any]) -> Any:
    """The element-wise mean of equally shaped JSON trees; numbers are averaged (NaN and
    null ignored), anything else is taken from the first tree.

    Args:
        trees: One parsed JSON value per seed.
    """
    first = trees[0]
    if isinstance(first, Mapping):
        return {key: mean_tree([tree.get(key) if isinstance(tree, Mapping) else None
                                for tree in trees])
                for key in first}
    if isinstance(first, list) and all(isinstance(t, list) and len(t) == len(first)
                                       for t in trees):
        return [mean_tree([tree[i] for tree in trees]) for i in range(len(first))]
    numbers = [float(v) for v in trees
               if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)]
    if isinstance(first, int | float) and not isinstance(first, bool) or (
            first is None and numbers):
        return float(np.mean(numbers)) if numbers else None
    return first


def accuracy_intervals(
    per_seed: Sequence[Mapping[str, Any]],
    predictions: SeededPredictions | None,
    class_counts: np.ndarray | None,
    many_above: int,
    few_below: int,
    seed: int = 0,
) -> dict[str, Interval | None]:
    """Column -> the interval of a classifier's test accuracy over the seeds.

    Args:
        per_seed: Each seed's metrics {"overall", "many", ...}.
        predictions: Its test predictions (needed for the bootstrap of a single seed).
        class_counts: int [C], the bank's training counts (the shot groups).
        many_above: Shot groups.
        few_below: Shot groups.
        seed: Seed of the bootstrap.
    """
    if len(per_seed) >= 2 or predictions is None or class_counts is None:
        return {column: t_interval(np.array([_number(m.get(column)) for m in per_seed]))
                for column in ACCURACY_COLUMNS}
    correct = predictions.correct[0].astype(np.float64)
    groups = class_groups(class_counts, many_above, few_below)
    return bootstrap_interval(correct, predictions.labels, groups, seed=seed)


def gain_intervals(
    base: Sequence[Mapping[str, Any]],
    with_dlsa: Sequence[Mapping[str, Any]],
    predictions: tuple[SeededPredictions, SeededPredictions] | None,
    class_counts: np.ndarray | None,
    many_above: int,
    few_below: int,
    seed: int = 0,
) -> dict[str, Interval | None]:
    """Column -> the interval of (base + DLSA) - base over the seeds (see the module doc)."""
    if len(base) >= 2 or predictions is None or class_counts is None:
        return {column: t_interval(np.array([_number(d.get(column)) - _number(b.get(column))
                                             for b, d in zip(base, with_dlsa, strict=True)]))
                for column in ACCURACY_COLUMNS}
    plain, dlsa = predictions
    groups = class_groups(class_counts, many_above, few_below)
    tests = paired_bootstrap(dlsa.correct[0].astype(np.float64),
                             plain.correct[0].astype(np.float64), plain.labels, groups, seed=seed)
    return {column: (test.difference if test is not None else None)
            for column, test in tests.items()}


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def leaders(
    candidates: Mapping[str, SeededPredictions],
    means: Mapping[str, float | None],
    class_counts: np.ndarray,
    group: str,
    many_above: int,
    few_below: int,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, str]:
    """Which rows of a table column lead: key -> "best" or "tied".

    The row with the highest mean leads. It is "best" alone when a paired bootstrap over the
    test rows (seeds pooled per row) finds it above every other row at level ``alpha``;
    otherwise it and every row it does not beat are "tied".

    Args:
        candidates: Row key -> its test predictions over the seeds (rows of one split).
        means: Row key -> the column's mean value (None when the group has no rows).
        class_counts: int [C], training counts (shot groups).
        group: "overall", "many", "medium" or "few".
    """
    scored = {key: value for key, value in means.items()
              if value is not None and math.isfinite(value) and key in candidates}
    if not scored:
        return {}
    leader = max(scored, key=lambda key: scored[key])
    groups = class_groups(class_counts, many_above, few_below)
    chosen = {} if group == "overall" else {group: groups[group]}
    top = candidates[leader].correct.mean(axis=0)
    tied = []
    for key in scored:
        if key == leader:
            continue
        other = candidates[key].correct.mean(axis=0)
        test = paired_bootstrap(top, other, candidates[leader].labels, chosen, seed=seed)[group]
        if test is None or not test.p_value < alpha:
            tied.append(key)
    if not tied:
        return {leader: "best"}
    return {leader: "tied", **{key: "tied" for key in tied}}
