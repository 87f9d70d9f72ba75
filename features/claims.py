"""Judging a paper's claim about two results tested on the same rows.

A claim is "A > B" (superiority: A is better) or "A >= B" (non-inferiority: A is no worse than
B by more than a margin). It is judged on the 95 % interval of the accuracy difference A - B:

    A > B    holds when the interval lies above 0; fails when it lies at or below 0 (the data
             rule out any gain); inconclusive otherwise.
    A >= B   holds when the interval's lower end is at least -margin; fails when its upper end
             is below -margin (A is resolved worse by more than the margin); inconclusive
             otherwise. The margin is 0.5 points of accuracy.

With several seeds, two intervals describe the difference: the paired bootstrap over the test
rows (seeds pooled per row) and the t interval of the per-seed differences; a claim is judged
on the wider of the two (the union of their ranges), so neither the row noise nor the
training noise is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from features.errors import FeaturesError
from features.uncertainty import Interval

RELATIONS = (">", ">=")
NON_INFERIORITY_MARGIN = 0.005
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"


@dataclass(frozen=True)
class Judgement:
    """A claim's verdict and the interval it rests on.

    Attributes:
        relation: ">" or ">=".
        difference: A - B with the interval the verdict used.
        verdict: "holds", "fails" or "inconclusive".
    """

    relation: str
    difference: Interval
    verdict: str


def widest(rows: Interval, seeds: Interval | None) -> Interval:
    """The interval spanning both the row bootstrap and the across-seed t interval.

    Args:
        rows: Paired bootstrap interval of A - B over the test rows.
        seeds: t interval of the per-seed differences, or None (one seed).

    Returns:
        ``rows`` when there is no seed interval, else the union of the two ranges around the
        row estimate (method "bootstrap+t").
    """
    if seeds is None or seeds.method != "t":
        return rows
    return Interval(rows.value, min(rows.low, seeds.low), max(rows.high, seeds.high),
                    "bootstrap+t", seeds.samples)


def judge(relation: str, difference: Interval,
          margin: float = NON_INFERIORITY_MARGIN) -> Judgement:
    """The verdict on "A ``relation`` B" from the interval of A - B.

    Raises:
        FeaturesError: an unknown relation or a negative margin.
    """
    if relation not in RELATIONS:
        raise FeaturesError(f"claim relation '{relation}': use one of {', '.join(RELATIONS)}")
    if margin < 0:
        raise FeaturesError(f"non-inferiority margin {margin}: it must be at least 0")
    if relation == ">":
        verdict = HOLDS if difference.low > 0 else FAILS if difference.high <= 0 else INCONCLUSIVE
    else:
        verdict = (HOLDS if difference.low >= -margin
                   else FAILS if difference.high < -margin else INCONCLUSIVE)
    return Judgement(relation, difference, verdict)
