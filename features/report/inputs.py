"""What the report reads: one `ReportInput` per method, `ReportSettings`, and lenient lookups.

The inputs are plain dicts and lists read from the stages' outputs (the analysis as a typed
`AnalysisResult`, read leniently), so any level may be missing, null or non-finite; the
helpers here turn such a value into None (or NaN for a plot, or an en dash for a table)
instead of failing, and every other report module reads through them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from features.analysis.result import AnalysisResult, ViewResult

SHOT_COLUMNS = ("overall", "many", "medium", "few")
METRIC_COLUMNS = (*SHOT_COLUMNS, "mcc", "nmi", "ece")


@dataclass
class ReportInput:
    """Everything the report shows of one method; a field is None when its stage left nothing.

    Attributes:
        method: Method name (a key of `methods:`).
        classify: Classifier kind -> test metrics {overall, many, medium, few, mcc, nmi, ece,
            val_overall, ...}, means over the seeds, and "ci": column -> [low, high], the 95 %
            interval of each accuracy column (`features.seeds`).
        per_class: Classifier kind -> rows {class, train_count, accuracy} (test accuracy).
        dlsa: Base kind -> {"base": metrics, "dlsa": metrics, "val_overall_dlsa", "gain":
            column -> {"value", "low", "high"} of base + DLSA minus base}.
        dlsa_filters: One dict per DLSA filter: index, threshold, routed_share / seen_share /
            separation_accuracy / tail_share_seen per split, cluster_sizes, cluster_purity, ...
        analysis: The feature analysis (`features.analysis.analyze.analyze_bank`).
        tsne: Rows {x, y, label, group} with group "head" or "tail".
        confusion: {"matrix": [B][B] row-normalised, "bins": [{classes, min_count, max_count}]},
            classes sorted by training frequency, most frequent bin first.
        pretrain: The backbone's training summary {best_epoch, best_val_acc, ...}.
        backbone: The backbone architecture's name.
        seeds: The training seeds the numbers are means over.
    """

    method: str
    classify: Mapping[str, Mapping[str, Any]] | None = None
    per_class: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
    dlsa: Mapping[str, Mapping[str, Any]] | None = None
    dlsa_filters: Sequence[Mapping[str, Any]] | None = None
    analysis: AnalysisResult | None = None
    tsne: Sequence[Mapping[str, Any]] | None = None
    confusion: Mapping[str, Any] | None = None
    pretrain: Mapping[str, Any] | None = None
    backbone: str | None = None
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReportSettings:
    """What the report says about how groups are defined.

    Attributes:
        title: Page title.
        many_above: A class with more training images is "many" (`features.metrics`).
        few_below: A class with fewer training images is "few"; the rest are "medium".
        tail_max_count: A class with at most this many training images is tail (head/tail
            probe, t-SNE colours, DLSA separation accuracy).
        dlsa_tail_max_count: The tail of the DLSA separation accuracy when it differs;
            None = tail_max_count.
        seeds: The training seeds of the run.
        marks: Accuracy column -> {"<method>:<classifier>": "best" | "tied"}, decided by paired
            tests (`features.seeds.leaders`); "glance:<column>" for the table of each method's
            classifier chosen on val. A column without marks has no bold value.
    """

    title: str = "tailbank report"
    many_above: int = 100
    few_below: int = 20
    tail_max_count: int = 50
    dlsa_tail_max_count: int | None = None
    seeds: tuple[int, ...] = (0,)
    marks: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


def number(value: Any) -> float | None:
    """A finite float, or None for a missing, null or non-finite value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def nan_if_missing(value: Any) -> float:
    """`number(value)`, NaN in place of None (matplotlib leaves a NaN point out)."""
    result = number(value)
    return math.nan if result is None else result


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: the number with `digits` decimals, an en dash when there is none."""
    result = number(value)
    if result is None:
        return "\u2013"
    return f"{result:.{digits}f}"


def diff(a: Any, b: Any) -> float | None:
    """a - b, None when either is not a finite number."""
    a, b = number(a), number(b)
    return None if a is None or b is None else a - b


def dig(value: Any, path: Sequence[str]) -> Any:
    """value[path[0]][path[1]]..., None where a level is missing."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def analysis_view(item: ReportInput, view: str) -> ViewResult | None:
    """One view's section of a method's analysis (`features`, `extra/z`, ...); None if absent."""
    return None if item.analysis is None else item.analysis.view(view)
