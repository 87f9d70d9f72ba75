"""The report's words and choices shared by HTML and Markdown: rows, best values, ranking.

Every sentence is computed from the numbers (no fixed conclusions): which method and classifier
is best per column, what DLSA changed, and how feature statistics track few-shot accuracy
across methods (Spearman rank correlation).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from features.analysis.result import ViewResult
from features.report.inputs import (
    ReportInput,
    ReportSettings,
    analysis_view,
    diff,
    dig,
    fmt,
    number,
)

# Higher is better for every column but ECE.
_LOWER_IS_BETTER = frozenset({"ece"})

MARKS_LEGEND = (
    "Bold: the best of its column, and better than every other row by a paired bootstrap "
    "over the test rows (p < 0.05); \u2248: tied for best, a difference the test rows do not "
    "resolve. MCC, NMI and ECE are not tested and never bold."
)


def _rho(view: ViewResult) -> float | None:
    """rho of the view over all classes: a statistic the ranking sentences compare."""
    return view.representation.overall.rho


def _few_shot_purity(view: ViewResult) -> float | None:
    """Few-shot test kNN purity of the view: a statistic the ranking sentences compare."""
    return view.knn.query.purity.few


def seeds_line(settings: ReportSettings) -> str:
    """How the numbers were made: over how many seeds, and which intervals."""
    seeds = settings.seeds
    if len(seeds) == 1:
        return (f"One training seed ({seeds[0]}): each accuracy has the 95 % interval of a "
                "bootstrap over the test rows (stratified by class).")
    return (f"{len(seeds)} training seeds ({', '.join(map(str, seeds))}): each accuracy is "
            "the mean over the seeds with the 95 % Student-t interval of the per-seed values"
            + (" (with 2 seeds t has 1 degree of freedom, so the interval is wide on "
               "purpose)" if len(seeds) == 2 else "") + ".")


@dataclass(frozen=True)
class SummaryRow:
    """One line of the summary table: a method, a classifier and its test metrics.

    ``key`` names the row in `ReportSettings.marks`: the classifier kind, or "<kind>+dlsa".
    """

    method: str
    classifier: str
    metrics: Mapping[str, Any]
    key: str = ""

    @property
    def mark_key(self) -> str:
        return f"{self.method}:{self.key or self.classifier}"


def summary_rows(inputs: Sequence[ReportInput]) -> list[SummaryRow]:
    """Every method x classifier, each DLSA base kind right after its method's classifiers."""
    rows = []
    for item in inputs:
        for kind, metrics in (item.classify or {}).items():
            rows.append(SummaryRow(item.method, kind, metrics, kind))
        for kind, entry in (item.dlsa or {}).items():
            rows.append(SummaryRow(item.method, f"{kind} + DLSA", entry.get("dlsa") or {},
                                   f"{kind}+dlsa"))
    return rows


def chosen_classifier(item: ReportInput) -> str | None:
    """The classifier kind with the best val accuracy (first one on a tie); None without any."""
    best, best_value = None, -math.inf
    for kind, metrics in (item.classify or {}).items():
        value = number(metrics.get("val_overall"))
        value = -math.inf if value is None else value
        if best is None or value > best_value:
            best, best_value = kind, value
    return best


def best_value(rows: Sequence[SummaryRow], column: str) -> float | None:
    """The best finite value of a metric column (lowest for ECE); None when it has none."""
    values = [v for v in (number(row.metrics.get(column)) for row in rows) if v is not None]
    if not values:
        return None
    return min(values) if column in _LOWER_IS_BETTER else max(values)


def best_row(rows: Sequence[SummaryRow], column: str) -> SummaryRow | None:
    """The first row holding `best_value` of the column; None when the column is empty."""
    best = best_value(rows, column)
    if best is None:
        return None
    return next(row for row in rows if number(row.metrics.get(column)) == best)


def missing_notes(inputs: Sequence[ReportInput]) -> dict[str, list[str]]:
    """Section -> methods that have nothing for it."""
    return {
        "classify": [item.method for item in inputs if not item.classify],
        "dlsa": [item.method for item in inputs if not item.dlsa],
        "analysis": [item.method for item in inputs if item.analysis is None],
    }


def groups_line(settings: ReportSettings) -> str:
    """How shot groups and head/tail are defined, in one paragraph (plain text)."""
    line = (
        f"Shot groups by training images per class: many > {settings.many_above}, medium "
        f"{settings.few_below}\u2013{settings.many_above}, few < {settings.few_below}. "
    )
    dlsa_tail = settings.dlsa_tail_max_count
    if dlsa_tail is None or dlsa_tail == settings.tail_max_count:
        return line + (
            f"Tail (head/tail probe, t-SNE colours, DLSA separation): at most "
            f"{settings.tail_max_count} training images; head: the rest."
        )
    return line + (
        f"Tail (head/tail probe, t-SNE colours): at most {settings.tail_max_count} training "
        f"images; for the DLSA separation accuracy: at most {dlsa_tail}; head: the rest."
    )


def ranking(
    inputs: Sequence[ReportInput], marks: Mapping[str, Mapping[str, str]] | None = None
) -> list[str]:
    """Sentences comparing the methods, each computed from the numbers (no fixed conclusions).

    Args:
        inputs: One entry per method.
        marks: `ReportSettings.marks`: which rows a paired test found best or tied.
    """
    sentences = []
    rows = summary_rows(inputs)
    for column, label in (("overall", "overall"), ("few", "few-shot")):
        best = best_row(rows, column)
        if best is not None:
            sentences.append(_leader_sentence(rows, best, column, label, marks or {}))
    sentences += _dlsa_sentences(inputs)
    features = {item.method: analysis_view(item, "features") for item in inputs}
    picks = (  # label, the statistic of a view's analysis, higher is better
        ("lowest \u03c1 (features, overall)", _rho, False),
        ("highest few-shot test kNN purity", _few_shot_purity, True),
        ("best head/tail linear separability", lambda view: view.separability.balanced_accuracy,
         True),
        ("purest k-means clusters", lambda view: view.kmeans.purity, True),
    )
    for label, statistic, higher in picks:
        values = {m: number(statistic(view)) for m, view in features.items() if view is not None}
        values = {m: v for m, v in values.items() if v is not None}
        if values:
            # sorted() is stable: on a tie the method listed first wins
            method = sorted(values, key=values.__getitem__, reverse=higher)[0]
            sentences.append(f"The {label}: {method} ({fmt(values[method])}).")
    sentences += _why_sentences(inputs, features)
    if not sentences:
        sentences.append("No numbers to rank yet: no method has classifier or analysis results.")
    return sentences


def _leader_sentence(
    rows: Sequence[SummaryRow],
    best: SummaryRow,
    column: str,
    label: str,
    marks: Mapping[str, Mapping[str, str]],
) -> str:
    """Who leads a column, and whether the paired test resolves the lead."""
    text = (f"Highest {label} test accuracy: {best.method} with the {best.classifier} classifier "
            f"({fmt(best.metrics[column])})")
    column_marks = marks.get(column) or {}
    if not column_marks:
        return text + "; no paired test was possible (the test predictions are missing)."
    if column_marks.get(best.mark_key) == "best":
        return text + ", resolved: it beats every other row (paired bootstrap, p < 0.05)."
    tied = [row for row in rows if column_marks.get(row.mark_key) == "tied" and row is not best]
    names = ", ".join(f"{row.method} {row.classifier}" for row in tied[:4])
    more = f" and {len(tied) - 4} more" if len(tied) > 4 else ""
    return (text + f"; not resolved: the test rows cannot tell it from {names}{more} "
            "(paired bootstrap, p >= 0.05).")


def _dlsa_sentences(inputs: Sequence[ReportInput]) -> list[str]:
    """How often and by how much DLSA changed overall and few-shot accuracy over its base."""
    pairs = []
    for item in inputs:
        for kind, entry in (item.dlsa or {}).items():
            base, dlsa = entry.get("base") or {}, entry.get("dlsa") or {}
            changes = {
                column: diff(dlsa.get(column), base.get(column)) for column in ("overall", "few")
            }
            pairs.append((item.method, kind, changes))
    if not pairs:
        return []
    sentences = []
    for column, label in (("overall", "overall"), ("few", "few-shot")):
        deltas = [(m, k, c[column]) for m, k, c in pairs if c[column] is not None]
        if not deltas:
            continue
        raised = sum(delta > 0 for _, _, delta in deltas)
        mean = float(np.mean([delta for _, _, delta in deltas]))
        method, kind, top = max(deltas, key=lambda entry: entry[2])
        up, down = _resolved_gains(inputs, column)
        sentences.append(
            f"DLSA raised {label} accuracy for {raised} of {len(deltas)} method/base pairs "
            f"(mean change {mean:+.3f}; largest {top:+.3f} for {method} on {kind}); the "
            f"95 % interval of the gain excludes zero for {up} (up) and {down} (down) of them, "
            "the rest are not resolved."
        )
    return sentences


def _resolved_gains(inputs: Sequence[ReportInput], column: str) -> tuple[int, int]:
    """How many DLSA gains have an interval wholly above zero, and wholly below."""
    up = down = 0
    for item in inputs:
        for entry in (item.dlsa or {}).values():
            gain = dig(entry, ("gain", column))
            low = number(gain.get("low")) if isinstance(gain, Mapping) else None
            high = number(gain.get("high")) if isinstance(gain, Mapping) else None
            if low is not None and high is not None:
                up += low > 0
                down += high < 0
    return up, down


def _why_sentences(
    inputs: Sequence[ReportInput], features: Mapping[str, ViewResult | None]
) -> list[str]:
    """Rank correlations between feature statistics and few-shot accuracy across methods."""
    few = {}
    for item in inputs:
        kind = chosen_classifier(item)
        value = number((item.classify or {}).get(kind, {}).get("few")) if kind else None
        if value is not None:
            few[item.method] = value
    sentences = []
    statistics = (
        ("\u03c1 (features, overall)", _rho),
        ("few-shot kNN purity", _few_shot_purity),
    )
    for label, statistic in statistics:
        pairs = [
            (value, few[m])
            for m, view in features.items()
            if m in few and view is not None and (value := number(statistic(view))) is not None
        ]
        if len(pairs) < 3:
            continue
        rho = spearman(*zip(*pairs, strict=True))
        if rho is not None:
            sentences.append(
                f"Across {len(pairs)} methods, the Spearman correlation of {label} with the "
                f"few-shot accuracy of the classifier chosen on val is {rho:+.2f}."
            )
    return sentences


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks on ties); None when a side is constant.

    Args:
        a: Values, shape (n,).
        b: Values paired with `a`, shape (n,).

    Returns:
        The Pearson correlation of the average ranks of `a` and `b`.
    """
    first, second = np.asarray(a, np.float64), np.asarray(b, np.float64)
    # scipy warns and returns NaN for a constant side; the report says nothing there instead
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return None
    return float(scipy.stats.spearmanr(first, second).statistic)
