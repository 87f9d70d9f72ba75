"""What DVC's own views read: one small metrics file per method and the overlay plot tables.

The report stage writes them beside ``reports/index.html``, from the same means over the seeds:

* ``results/summary/<method>.json``: the handful of numbers ``dvc metrics show`` shows as one
  row per method and ``dvc exp show`` as columns (see `summary`).
* ``reports/plots/<method>/{curves,per_class,tsne}.csv``: what the top-level ``plots:`` of
  dvc.yaml overlay, one file per method (DVC tells the sources of a plot apart by file).

Numbers are percent with one decimal (``86.3``) under short keys: every column of
``dvc exp show`` stays a few characters wide, so more of them are shown before DVC collapses
the rest into "…".
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from features.report import ReportInput
from features.report.text import chosen_classifier
from stages.io import write_csv, write_json

# The keys of results/summary/<method>.json as `dvc metrics show` names them (README "Reading
# the results"); short, so that `dvc exp show` fits them in few columns.
SUMMARY_KEYS = ("acc", "ci.lo", "ci.hi", "many", "med", "few", "dlsa")
CURVE_COLUMNS = ("epoch", "val_acc", "train_acc", "train_loss")
PER_CLASS_COLUMNS = ("class", "train_count", "accuracy")
TSNE_COLUMNS = ("x", "y", "label", "group")


def summary(item: ReportInput, dlsa_gain: float | None) -> dict[str, Any]:
    """One method's row of ``dvc metrics show``: its classifier chosen on val.

    Args:
        item: the method's report input (means over the seeds).
        dlsa_gain: the overall gain of its main DLSA result (a fraction), None without one.

    Returns:
        In percent with one decimal: ``acc`` (test accuracy), ``ci`` {``lo``, ``hi``} (its
        95 % interval; None with one seed whose predictions are missing), ``many`` / ``med`` /
        ``few`` (per shot group) and ``dlsa`` (the gain, in points); None for what the stages
        did not leave.
    """
    kind = chosen_classifier(item)
    metrics: Mapping[str, Any] = ((item.classify or {}).get(kind) or {}) if kind else {}
    low, high = (metrics.get("ci") or {}).get("overall") or (None, None)
    if low is not None and low == high:
        # one seed without its predictions: `features.seeds` gives the value itself as both
        # ends, which would read as certainty
        low = high = None
    return {"acc": _percent(metrics.get("overall")),
            "ci": {"lo": _percent(low), "hi": _percent(high)},
            "many": _percent(metrics.get("many")), "med": _percent(metrics.get("medium")),
            "few": _percent(metrics.get("few")), "dlsa": _percent(dlsa_gain)}


def _percent(value: Any) -> float | None:
    # one decimal: finer than the 95 % intervals of any test set here, and narrow columns
    return None if value is None else round(100.0 * float(value), 1)


def write_summary(folder: Path, item: ReportInput, dlsa_gain: float | None) -> None:
    """Write ``<folder>/<method>.json`` (see `summary`)."""
    write_json(folder / f"{item.method}.json", summary(item, dlsa_gain))


def write_plot_tables(folder: Path, item: ReportInput,
                      curves: Sequence[Sequence[Mapping[str, str]]]) -> None:
    """Write the overlay tables of one method into ``folder`` (``reports/plots/<method>``).

    Args:
        folder: where to write.
        item: the method's report input: the per-class accuracy of its classifier chosen on
            val (mean over the seeds) and its t-SNE (first seed).
        curves: per seed, DVCLive's rows of each curve keyed by metric (see `read_curves`).
    """
    kind = chosen_classifier(item)
    per_class = (item.per_class or {}).get(kind) if kind else None
    # a table without rows keeps its header: DVC then draws an empty plot instead of failing
    for name, columns, rows in (("curves.csv", CURVE_COLUMNS, mean_curves(curves)),
                                ("per_class.csv", PER_CLASS_COLUMNS, per_class or []),
                                ("tsne.csv", TSNE_COLUMNS, item.tsne or [])):
        write_csv(folder / name, columns, [[row.get(column, "") for column in columns]
                                           for row in rows])


def read_curves(live: Path) -> list[dict[str, str]]:
    """One seed's training curves from DVCLive's ``<live>/plots/metrics/<name>.tsv``, one row
    per epoch (``step`` is the 1-based epoch); empty when the files are missing."""
    rows: dict[str, dict[str, str]] = {}
    for name in CURVE_COLUMNS[1:]:
        path = live / "plots" / "metrics" / f"{name}.tsv"
        if not path.is_file():
            return []
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                rows.setdefault(row["step"], {"epoch": row["step"]})[name] = row[name]
    return list(rows.values())


def mean_curves(per_seed: Sequence[Sequence[Mapping[str, str]]]) -> list[dict[str, str]]:
    """Each curve's mean over the seeds, per epoch; epochs every seed has (the shortest run's,
    e.g. when the backbone sweep or early stop differs)."""
    runs = [run for run in per_seed if run]
    if not runs:
        return []
    length = min(len(run) for run in runs)
    rows = []
    for index in range(length):
        row = {"epoch": runs[0][index]["epoch"]}
        for name in CURVE_COLUMNS[1:]:
            values = [float(run[index][name]) for run in runs]
            row[name] = f"{sum(values) / len(values):.6g}"
        rows.append(row)
    return rows
