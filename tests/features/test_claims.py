"""Verdicts on a claim from the interval of its difference (features/claims.py)."""

from __future__ import annotations

import pytest

from features.claims import FAILS, HOLDS, INCONCLUSIVE, judge, widest
from features.errors import FeaturesError
from features.uncertainty import Interval


def interval(low: float, high: float, method: str = "bootstrap") -> Interval:
    return Interval((low + high) / 2, low, high, method, 100)


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(0.001, 0.05, HOLDS), (-0.01, 0.05, INCONCLUSIVE), (-0.05, 0.0, FAILS),
     (-0.05, -0.01, FAILS), (0.0, 0.0, FAILS)],
)
def test_superiority_holds_only_above_zero_and_fails_when_no_gain_is_left(
    low: float, high: float, verdict: str
) -> None:
    assert judge(">", interval(low, high)).verdict == verdict


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(-0.005, 0.02, HOLDS), (-0.004, -0.001, HOLDS), (0.0, 0.0, HOLDS),
     (-0.0051, 0.02, INCONCLUSIVE), (-0.03, -0.004, INCONCLUSIVE), (-0.03, -0.0051, FAILS)],
)
def test_non_inferiority_is_judged_against_half_a_point(
    low: float, high: float, verdict: str
) -> None:
    assert judge(">=", interval(low, high)).verdict == verdict
    assert judge(">=", interval(low, high), margin=0.0).verdict == (
        HOLDS if low >= 0 else FAILS if high < 0 else INCONCLUSIVE)


def test_the_wider_of_rows_and_seeds_is_judged() -> None:
    rows = Interval(0.02, 0.01, 0.03, "bootstrap", 600)
    seeds = Interval(0.025, -0.01, 0.06, "t", 5)
    both = widest(rows, seeds)
    assert (both.value, both.low, both.high, both.method) == (0.02, -0.01, 0.06, "bootstrap+t")
    assert judge(">", both).verdict == INCONCLUSIVE and judge(">", rows).verdict == HOLDS
    assert widest(rows, None) is rows
    assert widest(rows, Interval(0.02, 0.02, 0.02, "none", 1)) is rows


def test_a_bad_relation_or_margin_is_refused() -> None:
    with pytest.raises(FeaturesError, match="claim relation '<'"):
        judge("<", interval(0, 1))
    with pytest.raises(FeaturesError, match="margin -0.1"):
        judge(">=", interval(0, 1), margin=-0.1)
