"""Confidence intervals and paired tests (`features.uncertainty`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from features.uncertainty import (
    bootstrap_interval,
    mcnemar,
    paired_bootstrap,
    resampled_class_sums,
    t_interval,
)

CLASSES = np.repeat(np.arange(10), 60)
TRUE_ACCURACY = np.linspace(0.70, 0.98, 10)  # per class; the balanced test's accuracy is the mean


def test_the_95_percent_bootstrap_interval_covers_the_true_accuracy_95_percent_of_the_time() -> None:
    """2000 seeded synthetic test sets of 600 rows (10 classes x 60): the interval of each must
    cover the true balanced accuracy in 93-97 % of them."""
    rng = np.random.default_rng(0)
    covered = 0
    for draw in range(2000):
        correct = (rng.random(len(CLASSES)) < TRUE_ACCURACY[CLASSES]).astype(float)
        interval = bootstrap_interval(correct, CLASSES, resamples=1000, seed=draw)["overall"]
        covered += interval.low <= TRUE_ACCURACY.mean() <= interval.high
    assert 0.93 <= covered / 2000 <= 0.97, covered / 2000


def test_resampling_stays_within_each_class() -> None:
    values = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    classes = np.array([0, 0, 1, 1, 2, 2])
    sums, sizes = resampled_class_sums(values, classes, resamples=500, seed=3)
    assert sizes.tolist() == [2, 2, 2]
    assert np.all(sums[:, 0] == 2) and np.all(sums[:, 1] == 0)  # constant classes stay put
    assert set(np.unique(sums[:, 2])) <= {0.0, 1.0, 2.0}
    again, _ = resampled_class_sums(values, classes, resamples=500, seed=3)
    np.testing.assert_array_equal(sums, again)


def test_group_intervals_use_only_their_classes() -> None:
    correct = np.where(CLASSES < 5, 1.0, 0.0)
    intervals = bootstrap_interval(correct, CLASSES, {"head": np.arange(5), "tail": np.arange(5, 10),
                                                      "absent": np.array([42])})
    assert (intervals["head"].low, intervals["head"].high, intervals["head"].value) == (1, 1, 1)
    assert intervals["tail"].value == 0 and intervals["overall"].value == 0.5
    assert intervals["absent"] is None
    # stratified: classes that are all right or all wrong leave no doubt about the mix
    assert (intervals["overall"].low, intervals["overall"].high) == (0.5, 0.5)


def test_t_interval_is_the_student_formula() -> None:
    values = np.array([0.90, 0.93, 0.91])
    interval = t_interval(values)
    half = stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3)
    assert interval.method == "t" and interval.samples == 3
    assert interval.value == pytest.approx(values.mean())
    assert interval.low == pytest.approx(values.mean() - half)
    assert interval.high == pytest.approx(values.mean() + half)
    two = t_interval(np.array([0.90, 0.92]))
    assert two.high - two.low == pytest.approx(2 * 12.7062 * 0.01 / math.sqrt(2) * math.sqrt(2), rel=1e-4)
    single = t_interval(np.array([0.9, np.nan]))
    assert (single.low, single.high, single.method) == (0.9, 0.9, "none")
    assert t_interval(np.array([np.nan])) is None


def test_paired_bootstrap_finds_a_known_difference_and_no_difference() -> None:
    rng = np.random.default_rng(1)
    first = (rng.random(len(CLASSES)) < 0.9).astype(float)
    better = first.copy()
    better[np.flatnonzero(first == 0)[:40]] = 1.0  # 40 of 600 rows fixed: +0.0667
    test = paired_bootstrap(better, first, CLASSES)["overall"]
    assert test.difference.value == pytest.approx(40 / 600)
    assert test.significant() and test.difference.low > 0
    same = paired_bootstrap(first, first, CLASSES)["overall"]
    assert same.p_value == 1.0 and not same.significant()


def test_mcnemar_matches_a_hand_computation() -> None:
    # 30 rows only A gets right, 10 only B: chi2 = (|30 - 10| - 1)^2 / 40 = 9.025
    first = np.array([True] * 30 + [False] * 10 + [True] * 50 + [False] * 5)
    second = np.array([False] * 30 + [True] * 10 + [True] * 50 + [False] * 5)
    result = mcnemar(first, second)
    assert (result.only_first, result.only_second) == (30, 10)
    assert result.statistic == pytest.approx(9.025)
    # P(chi2_1 > 9.025) = erfc(sqrt(9.025 / 2))
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-9)
    # few discordant rows: exact binomial, 2 * P(X <= 1) for X ~ Bin(8, 1/2) = 2 * 9 / 256
    small = mcnemar(np.array([True, False] * 1 + [False] * 6), np.array([False, True] * 1 + [True] * 6))
    assert (small.only_first, small.only_second) == (1, 7)
    assert small.statistic is None and small.p_value == pytest.approx(2 * 9 / 256)
    assert mcnemar(first, first).p_value == 1.0
