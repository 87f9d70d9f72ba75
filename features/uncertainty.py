"""How sure a reported accuracy is: bootstrap and t intervals, paired tests, McNemar.

Every test split tailbank evaluates on is drawn per class (balanced, or as the dataset gives
it), so the bootstrap here is stratified by class: each resample draws, within every class,
as many rows as the class has, with replacement. For values with few distinct levels (a row is
right or wrong; a pooled or paired row takes one of a handful of values) that resample is a
multinomial draw over the levels, which is exact and costs O(classes x levels) per resample
instead of O(rows). Everything is seeded, so the same inputs give the same interval.

Intervals:
    one seed      percentile bootstrap of the test rows (`bootstrap_interval`);
    several seeds Student-t interval of the per-seed values (`t_interval`): the seeds are the
                  replicates of the training randomness. With 2 seeds it has 1 degree of freedom
                  (t = 12.71) and is wide on purpose: two runs say little about a third.
Comparisons of two classifiers on the same test rows (`paired_bootstrap`, `mcnemar`) do not
need replicates: their rows are paired, so the row-level noise that both share cancels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from features.errors import FeaturesError

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A value with its confidence interval.

    Attributes:
        value: The point estimate (mean over rows, or over seeds).
        low: Lower end of the interval.
        high: Upper end.
        method: "bootstrap" (rows, one seed), "t" (across seeds) or "none" (one value, no rows).
        samples: Rows (bootstrap) or seeds (t) behind it.
    """

    value: float
    low: float
    high: float
    method: str
    samples: int

    def to_dict(self) -> dict[str, float | str | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "method": self.method,
                "samples": self.samples}


def resampled_class_sums(
    values: np.ndarray, classes: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified bootstrap of per-class sums.

    Args:
        values: float [N], one value per test row (1/0 for right/wrong, a mean over seeds,
            or a paired difference).
        classes: int [N], the true class of each row (the strata).
        resamples: B.
        seed: Seed of the draws.

    Returns:
        (sums [B, C'], sizes [C']): for each of the C' classes present (in increasing class
        order), the sum of its resampled values in every resample, and its row count.
    """
    values = np.asarray(values, dtype=np.float64)
    classes = np.asarray(classes)
    if values.shape != classes.shape or values.ndim != 1:
        raise FeaturesError(f"values {values.shape} and classes {classes.shape} must be [N] each")
    rng = np.random.default_rng(seed)
    present = np.unique(classes)
    sums = np.empty((resamples, len(present)))
    sizes = np.empty(len(present), dtype=np.int64)
    for column, label in enumerate(present):
        rows = values[classes == label]
        levels, counts = np.unique(rows, return_counts=True)
        draws = rng.multinomial(len(rows), counts / len(rows), size=resamples)  # [B, levels]
        sums[:, column] = draws @ levels
        sizes[column] = len(rows)
    return sums, sizes


def bootstrap_interval(
    values: np.ndarray,
    classes: np.ndarray,
    groups: Mapping[str, np.ndarray] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Interval | None]:
    """Percentile bootstrap intervals of the mean of ``values``, overall and per class group.

    Args:
        values: float [N], per test row.
        classes: int [N], their true classes.
        groups: Group name -> class ids (e.g. many / medium / few); "overall" is always added.
        resamples: Bootstrap resamples (at least 1000 for a 95 % interval).
        seed: Seed of the resamples.
        level: Confidence level.

    Returns:
        Group name -> its interval, None for a group without test rows.
    """
    tail = (1 - level) / 2
    result: dict[str, Interval | None] = {}
    for name, found in _group_means(values, classes, groups, resamples, seed).items():
        if found is None:
            result[name] = None
            continue
        point, means, rows = found
        low, high = np.quantile(means, [tail, 1 - tail])
        result[name] = Interval(point, float(low), float(high), "bootstrap", rows)
    return result


def _group_means(
    values: np.ndarray,
    classes: np.ndarray,
    groups: Mapping[str, np.ndarray] | None,
    resamples: int,
    seed: int,
) -> dict[str, tuple[float, np.ndarray, int] | None]:
    """Group name -> (mean of its rows, the B resampled means [B], its rows); None if empty."""
    values = np.asarray(values, dtype=np.float64)
    classes = np.asarray(classes)
    sums, sizes = resampled_class_sums(values, classes, resamples, seed)
    present = np.unique(classes)
    found: dict[str, tuple[float, np.ndarray, int] | None] = {}
    for name, members in {"overall": present, **(groups or {})}.items():
        chosen = np.isin(present, np.asarray(members))
        rows = int(sizes[chosen].sum())
        if rows == 0:
            found[name] = None
            continue
        point = float(values[np.isin(classes, present[chosen])].mean())
        found[name] = (point, sums[:, chosen].sum(axis=1) / rows, rows)
    return found


def t_interval(per_seed: np.ndarray, level: float = LEVEL) -> Interval | None:
    """Student-t interval of the mean of per-seed values (mean ± t_{n-1} s / sqrt n).

    Args:
        per_seed: float [n], one value per seed; NaN (an empty group) is dropped.
        level: Confidence level.

    Returns:
        The interval; with one value its ends are the value itself (method "none"); None
        when no value is finite.
    """
    values = np.asarray(per_seed, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    mean = float(values.mean())
    if len(values) == 1:
        return Interval(mean, mean, mean, "none", 1)
    from scipy import stats  # on use: importing scipy.stats costs a second per command

    half = float(stats.t.ppf(1 - (1 - level) / 2, len(values) - 1)
                 * values.std(ddof=1) / math.sqrt(len(values)))
    return Interval(mean, mean - half, mean + half, "t", len(values))


@dataclass(frozen=True)
class PairedTest:
    """A - B on the same test rows.

    Attributes:
        difference: The interval of mean(A) - mean(B).
        p_value: Two-sided bootstrap p-value of "no difference": twice the share of resamples
            on the far side of zero (at most 1).
    """

    difference: Interval
    p_value: float

    def significant(self, alpha: float = 1 - LEVEL) -> bool:
        return self.p_value < alpha


def paired_bootstrap(
    first: np.ndarray,
    second: np.ndarray,
    classes: np.ndarray,
    groups: Mapping[str, np.ndarray] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, PairedTest | None]:
    """Paired bootstrap of mean(first) - mean(second), overall and per group.

    Args:
        first: float [N], per test row (1/0 correct, or the mean over seeds) of classifier A.
        second: float [N], the same rows for classifier B.
        classes: int [N], the rows' true classes (strata).
        groups: Group name -> class ids.
        resamples: B.
        seed: Seed.
        level: Confidence level.

    Returns:
        Group name -> the test, None for a group without rows.
    """
    difference = np.asarray(first, np.float64) - np.asarray(second, np.float64)
    tail = (1 - level) / 2
    tests: dict[str, PairedTest | None] = {}
    for name, found in _group_means(difference, classes, groups, resamples, seed).items():
        if found is None:
            tests[name] = None
            continue
        point, means, rows = found
        low, high = np.quantile(means, [tail, 1 - tail])
        below, above = float((means <= 0).mean()), float((means >= 0).mean())
        interval = Interval(point, float(low), float(high), "bootstrap", rows)
        tests[name] = PairedTest(interval, min(1.0, 2 * min(below, above)))
    return tests


@dataclass(frozen=True)
class McNemar:
    """McNemar's test of two classifiers on the same rows.

    Attributes:
        only_first: Rows A gets right and B wrong (b).
        only_second: Rows B gets right and A wrong (c).
        statistic: (|b - c| - 1)^2 / (b + c) when the chi-square form is used, else None.
        p_value: Two-sided p-value: exact binomial (b of b + c at 1/2) when b + c < 25,
            chi-square with continuity correction (1 degree of freedom) otherwise.
    """

    only_first: int
    only_second: int
    statistic: float | None
    p_value: float


EXACT_BELOW = 25


def mcnemar(first_correct: np.ndarray, second_correct: np.ndarray) -> McNemar:
    """McNemar's test (McNemar 1947; Edwards' continuity correction) on paired right/wrong.

    Args:
        first_correct: bool [N], A right on each row.
        second_correct: bool [N], B right on the same rows.
    """
    a = np.asarray(first_correct, dtype=bool)
    b = np.asarray(second_correct, dtype=bool)
    if a.shape != b.shape:
        raise FeaturesError(f"paired rows differ in shape: {a.shape} and {b.shape}")
    only_first, only_second = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_first + only_second
    if discordant == 0:
        return McNemar(0, 0, None, 1.0)
    from scipy import stats  # on use: importing scipy.stats costs a second per command

    if discordant < EXACT_BELOW:
        p_value = float(stats.binomtest(only_first, discordant, 0.5).pvalue)
        return McNemar(only_first, only_second, None, min(1.0, p_value))
    statistic = (abs(only_first - only_second) - 1) ** 2 / discordant
    return McNemar(only_first, only_second, float(statistic), float(stats.chi2.sf(statistic, 1)))
