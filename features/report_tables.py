"""The report's tables as headers and rows of text cells, shared by HTML and Markdown.

A cell is plain text; the caller escapes it for its format. Summary cells holding a column's
best value are passed through the caller's `bold` marker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from features.report_inputs import METRIC_COLUMNS, SHOT_COLUMNS, ReportInput, dig, fmt, number
from features.report_text import SummaryRow, best_value

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
    "overall + DLSA",
    "few",
    "few + DLSA",
    "ECE",
    "ECE + DLSA",
]

FILTER_HEADER = [
    "method",
    "filter",
    "separation accuracy",
    "chance",
    "routed share",
    "pure clusters",
    "clusters",
]


def summary_cells(rows: list[SummaryRow], bold: Callable[[str], str]) -> list[list[str]]:
    """Rows of `SUMMARY_HEADER`; each column's best value goes through `bold`."""
    best = {column: best_value(rows, column) for column in METRIC_COLUMNS}
    cells = []
    for row in rows:
        line = [row.method, row.classifier]
        for column in METRIC_COLUMNS:
            value = number(row.metrics.get(column))
            text = fmt(value)
            line.append(bold(text) if value is not None and value == best[column] else text)
        cells.append(line)
    return cells


def separability_cells(analysed: list[ReportInput]) -> list[list[str]]:
    """Rows of `SEPARABILITY_HEADER`: one per method and analysed view."""
    cells = []
    for item in analysed:
        for view, section in ordered_views(item):
            rho = [dig(section, ("representation", g, "rho")) for g in SHOT_COLUMNS]
            purity = [dig(section, ("knn", "query", "purity", g)) for g in SHOT_COLUMNS]
            cells.append(
                [
                    item.method,
                    view,
                    *map(fmt, rho),
                    *map(fmt, purity),
                    fmt(dig(section, ("kmeans", "purity"))),
                    fmt(dig(section, ("separability", "balanced_accuracy"))),
                ]
            )
    return cells


def ordered_views(item: ReportInput) -> list[tuple[str, Mapping[str, Any]]]:
    """The analysed views, `features` first, then the extra views by name."""
    views = (item.analysis or {}).get("views") or {}
    return sorted(views.items(), key=lambda entry: (entry[0] != "features", entry[0]))


def probe_reasons(analysed: list[ReportInput]) -> list[str]:
    """ "method view: reason" for every view whose head/tail probe was not measured."""
    reasons = []
    for item in analysed:
        for view, section in ordered_views(item):
            reason = dig(section, ("separability", "reason"))
            if reason:
                reasons.append(f"{item.method} {view}: {reason}")
    return reasons


def posterior_cells(analysed: list[ReportInput]) -> list[list[str]]:
    """Rows [method, *SHOT_COLUMNS] of the mean positive posterior, for methods that have it."""
    return [
        [item.method, *(fmt(dig(item.analysis, ("posterior", g))) for g in SHOT_COLUMNS)]
        for item in analysed
        if item.analysis.get("posterior") is not None
    ]


def dlsa_cells(inputs: list[ReportInput]) -> list[list[str]]:
    """Rows of `DLSA_HEADER`: one per method and DLSA base classifier."""
    cells = []
    for item in inputs:
        for kind, entry in (item.dlsa or {}).items():
            line = [item.method, kind]
            for column in ("overall", "few", "ece"):
                line += [fmt(dig(entry, (side, column))) for side in ("base", "dlsa")]
            cells.append(line)
    return cells


def filter_cells(inputs: list[ReportInput]) -> list[list[str]]:
    """Rows of `FILTER_HEADER`: one per method and DLSA filter (1-based)."""
    cells = []
    for item in inputs:
        for entry in item.dlsa_filters or ():
            cells.append(
                [
                    item.method,
                    str(int(entry.get("index", 0)) + 1),
                    fmt(dig(entry, ("separation_accuracy", "test"))),
                    fmt(dig(entry, ("tail_share_seen", "test"))),
                    fmt(dig(entry, ("routed_share", "test"))),
                    fmt(entry.get("pure_clusters"), digits=0),
                    str(len(entry.get("cluster_sizes") or ())),
                ]
            )
    return cells
