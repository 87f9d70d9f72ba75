"""``tailbank compare A B``: two results on the same test rows, with their uncertainty."""

from __future__ import annotations

from features.comparison import GroupComparison, compare
from features.uncertainty import RESAMPLES
from stages.params import Params
from stages.results import parse_name, predictions_of

GROUPS = ("overall", "many", "medium", "few")


def run(params: Params, first: str, second: str) -> str:
    """The comparison table of ``first`` against ``second`` (names as in `stages.results`).

    Returns:
        The text to print: a heading naming both results and the seeds, then one line per
        shot group.
    """
    names = [parse_name(text, params) for text in (first, second)]
    (a, counts), (b, _) = (predictions_of(name, params) for name in names)
    groups = compare(a, b, counts, params.eval.many_above, params.eval.few_below,
                     seed=min(params.seeds))
    seeds = ", ".join(map(str, params.seeds))
    lines = [
        f"A = {a.name}, B = {b.name}; {len(params.seeds)} seed(s) ({seeds}), "
        f"{len(a.labels)} test rows",
        f"{'group':<8} {'rows':>5} {'A':>6} {'B':>6} {'A-B':>7} {'95% CI (rows)':>17} "
        f"{'p boot':>7} {'McNemar p (per seed)':>21}"
        + (f" {'95% CI (seeds)':>17}" if len(params.seeds) > 1 else ""),
    ]
    for group in GROUPS:
        found = groups.get(group)
        lines.append(_line(group, found, len(params.seeds) > 1))
    lines.append(_verdict(groups.get("overall"), a.name, b.name))
    return "\n".join(lines)


def _line(group: str, found: GroupComparison | None, seeds: bool) -> str:
    if found is None:
        return f"{group:<8} {0:>5}   (no test rows of this group)"
    paired = found.paired.difference
    mcnemar = " ".join(f"{test.p_value:.3g}" for test in found.mcnemar)
    line = (f"{group:<8} {found.rows:>5} {found.first:>6.3f} {found.second:>6.3f} "
            f"{paired.value:>+7.3f} [{paired.low:+.3f}, {paired.high:+.3f}] "
            f"{_p(found.paired.p_value):>7} {mcnemar:>21}")
    if seeds and found.across_seeds is not None:
        across = found.across_seeds
        line += f" [{across.low:+.3f}, {across.high:+.3f}]"
    return line


def _verdict(overall: GroupComparison | None, first: str, second: str) -> str:
    if overall is None:
        return "No test rows."
    test = overall.paired
    if not test.significant():
        return (f"Overall: no resolved difference (paired bootstrap p = {_p(test.p_value)} >= "
                "0.05); more test rows or seeds are needed to tell them apart.")
    better, worse = (first, second) if test.difference.value > 0 else (second, first)
    return (f"Overall: {better} beats {worse} by {abs(test.difference.value):.3f} "
            f"(paired bootstrap p {_p(test.p_value, '= ')} < 0.05).")


def _p(value: float, equals: str = "") -> str:
    """A bootstrap p-value; 0 means below the resolution of the resamples."""
    return f"< {1 / RESAMPLES:.0e}" if value == 0 else f"{equals}{value:.3g}"
