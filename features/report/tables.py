"""The report's tables as headers and rows of text cells, shared by HTML and Markdown.

A cell is plain text; the caller escapes it for its format. An accuracy is shown as its mean
over the seeds and the half-width of its 95 % interval ("0.912 ± 0.021"); a summary cell that
a paired test found best goes through the caller's `bold` marker, one tied for best gets
`TIED` after it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from features.analysis.result import ViewResult
from features.report.inputs import METRIC_COLUMNS, SHOT_COLUMNS, ReportInput, dig, fmt, number
from features.report.text import SummaryRow

SUMMARY_HEADER = ["method", "classifier", "overall", "many", "medium", "few", "MCC", "NMI", "ECE"]

SEPARABILITY_HEADER = [
    "method",
    "view",
    "\u03c1 overall",
    "\u03c1 many",
    "\u03c1 medium",
    "\u03c1 few",
    "kNN purity overall",
    "kNN many",
    "kNN medium",
    "kNN few",
    "k-means purity",
    "head/tail probe",
]

DLSA_HEADER = [
    "method",
    "base classifier",
    "overall",
    "+ DLSA (gated)",
    "gain (95 % CI)",
    "filters kept",
    "+ DLSA (all filters)",
    "gain, paper cascade (95 % CI)",
    "few",
    "few + DLSA (gated)",
    "gain few (95 % CI)",
]

FILTER_HEADER = [
    "method",
    "filter",
    "separation accuracy",
    "chance",
    "routed share",
    "pure clusters",
    "clusters",
    "routed rows: cluster-aided acc.",
    "routed rows: base acc.",
]


TIED = "\u2248"  # tied for best: the paired test cannot tell it from the leader


def summary_cells(
    rows: list[SummaryRow],
    bold: Callable[[str], str],
    marks: Mapping[str, Mapping[str, str]] | None = None,
    prefix: str = "",
) -> list[list[str]]:
    """Rows of `SUMMARY_HEADER`.

    Args:
        rows: The table's rows.
        bold: How the caller's format makes a cell bold.
        marks: Column -> {row key: "best" | "tied"} (`ReportSettings.marks`); a column
            without marks has no bold cell.
        prefix: Prepended to the column name to find its marks ("glance:" for the table of
            each method's classifier chosen on val).
    """
    cells = []
    for row in rows:
        line = [row.method, row.classifier]
        for column in METRIC_COLUMNS:
            text = with_interval(row.metrics, column)
            mark = ((marks or {}).get(prefix + column) or {}).get(row.mark_key)
            if mark == "best":
                text = bold(text)
            elif mark == "tied":
                text = f"{text} {TIED}"
            line.append(text)
        cells.append(line)
    return cells


def with_interval(metrics: Mapping[str, Any], column: str) -> str:
    """"0.912 ± 0.021": the value and the half-width of its 95 % interval, when it has one."""
    text = fmt(metrics.get(column))
    interval = (metrics.get("ci") or {}).get(column) if isinstance(metrics, Mapping) else None
    if text == "\u2013" or not interval or any(number(end) is None for end in interval):
        return text
    return f"{text} \u00b1 {fmt((float(interval[1]) - float(interval[0])) / 2)}"


def gain_text(entry: Mapping[str, Any], column: str, key: str = "gain") -> str:
    """"+0.005 [-0.010, +0.020]": a DLSA gain (``key``: "gain" gated, "gain_paper" every
    filter) with its 95 % interval."""
    gain = dig(entry, (key, column))
    if not isinstance(gain, Mapping) or number(gain.get("value")) is None:
        return "\u2013"
    value, low, high = (number(gain.get(key)) for key in ("value", "low", "high"))
    if low is None or high is None:
        return f"{value:+.3f}"
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def separability_cells(analysed: list[ReportInput]) -> list[list[str]]:
    """Rows of `SEPARABILITY_HEADER`: one per method and analysed view."""
    cells = []
    for item in analysed:
        for view, section in ordered_views(item):
            rho = [section.representation.of(g).rho for g in SHOT_COLUMNS]
            purity = [section.knn.query.purity.of(g) for g in SHOT_COLUMNS]
            cells.append(
                [
                    item.method,
                    view,
                    *map(fmt, rho),
                    *map(fmt, purity),
                    fmt(section.kmeans.purity),
                    fmt(section.separability.balanced_accuracy),
                ]
            )
    return cells


def ordered_views(item: ReportInput) -> list[tuple[str, ViewResult]]:
    """The analysed views, `features` first, then the extra views by name."""
    views = {} if item.analysis is None else item.analysis.views
    return sorted(views.items(), key=lambda entry: (entry[0] != "features", entry[0]))


def probe_reasons(analysed: list[ReportInput]) -> list[str]:
    """ "method view: reason" for every view whose head/tail probe was not measured."""
    reasons = []
    for item in analysed:
        for view, section in ordered_views(item):
            reason = section.separability.reason
            if reason:
                reasons.append(f"{item.method} {view}: {reason}")
    return reasons


def posterior_cells(analysed: list[ReportInput]) -> list[list[str]]:
    """Rows [method, *SHOT_COLUMNS] of the mean positive posterior, for methods that have it."""
    return [
        [item.method, *(fmt(item.analysis.posterior.of(g)) for g in SHOT_COLUMNS)]
        for item in analysed
        if item.analysis.posterior is not None
    ]


def dlsa_cells(inputs: list[ReportInput]) -> list[list[str]]:
    """Rows of `DLSA_HEADER`: one per method and DLSA base classifier."""
    cells = []
    for item in inputs:
        for kind, entry in (item.dlsa or {}).items():
            kept = entry.get("filters_per_seed") or ()
            cells.append([
                item.method, kind,
                with_interval(entry.get("base") or {}, "overall"),
                with_interval(entry.get("dlsa") or {}, "overall"),
                gain_text(entry, "overall"),
                ", ".join("\u2013" if n is None else str(n) for n in kept) or "\u2013",
                with_interval(entry.get("dlsa_paper") or {}, "overall"),
                gain_text(entry, "overall", "gain_paper"),
                with_interval(entry.get("base") or {}, "few"),
                with_interval(entry.get("dlsa") or {}, "few"),
                gain_text(entry, "few"),
            ])
    return cells


def filter_cells(inputs: list[ReportInput]) -> list[list[str]]:
    """Rows of `FILTER_HEADER`: one per method and DLSA filter (1-based); the routed-row
    accuracies are on test, the base being the first of ``dlsa.base_kinds`` (seed shown)."""
    cells = []
    for item in inputs:
        for entry in item.dlsa_filters or ():
            routed = dig(entry, ("routed_accuracy", "test")) or {}
            base = next((kind for kind in routed if kind != "cluster_aided"), None)
            cells.append(
                [
                    item.method,
                    str(int(entry.get("index", 0)) + 1),
                    fmt(dig(entry, ("separation_accuracy", "test"))),
                    fmt(dig(entry, ("tail_share_seen", "test"))),
                    fmt(dig(entry, ("routed_share", "test"))),
                    fmt(entry.get("pure_clusters"), digits=0),
                    str(len(entry.get("cluster_sizes") or ())),
                    fmt(routed.get("cluster_aided")),
                    "\u2013" if base is None else f"{fmt(routed.get(base))} ({base})",
                ]
            )
    return cells
