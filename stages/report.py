"""Stage ``report``: every method side by side in ``reports/index.html`` and ``summary.md``.

Collects whatever the classify, dlsa, analyze and pretrain stages left for each method of
``methods:``; a missing file becomes None and the report says so instead of failing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from features.report import ReportInput, ReportSettings, render_report
from stages.errors import StageError
from stages.io import write_bytes
from stages.layout import (
    analyze_results,
    classify_results,
    dlsa_results,
    pretrain_results,
    report_dir,
)
from stages.params import Params
from stages.progress import log


def run(params: Params) -> Path:
    """Render the report of every method in ``params.methods``.

    Returns:
        The path of ``reports/index.html``.
    """
    inputs = [collect(method, params) for method in params.methods]
    settings = ReportSettings(
        title=f"tailbank report: {params.data.dataset}",
        many_above=params.eval.many_above,
        few_below=params.eval.few_below,
        tail_max_count=params.analyze.tail_max_count,
        dlsa_tail_max_count=params.dlsa.tail_max_count,
    )
    page, summary = render_report(inputs, settings)
    out = report_dir()
    write_bytes(out / "index.html", page.encode())
    write_bytes(out / "summary.md", summary.encode())
    found = sum(item.classify is not None for item in inputs)
    log(f"report: {len(inputs)} methods ({found} with classifier results) -> {out / 'index.html'}")
    return out / "index.html"


def collect(method: str, params: Params) -> ReportInput:
    """What the stages left for one method; None for each missing piece."""
    classify = read_json(classify_results(method) / "metrics.json")
    if classify is not None:
        # the order of classify.kinds, then any other kind the file holds
        order = [k for k in params.classify.kinds if k in classify]
        classify = {kind: classify[kind] for kind in order + sorted(set(classify) - set(order))}
    per_class = {}
    for kind in classify or {}:
        rows = read_csv(classify_results(method) / "per_class" / f"{kind}.csv")
        if rows is not None:
            per_class[kind] = rows
    tsne = read_csv(analyze_results(method) / "tsne.csv")
    return ReportInput(
        method=method,
        classify=classify,
        per_class=per_class or None,
        dlsa=read_json(dlsa_results(method) / "metrics.json"),
        dlsa_filters=read_json(dlsa_results(method) / "filters.json"),
        analysis=read_json(analyze_results(method) / "analysis.json"),
        tsne=tsne or None,
        confusion=read_json(analyze_results(method) / "confusion.json"),
        pretrain=read_json(pretrain_results(method) / "metrics.json"),
        backbone=params.train_for(method).backbone,
    )


def read_json(path: Path) -> Any:
    """The parsed file, or None when it does not exist; one line when it is not JSON."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StageError(
            f"{path}: not valid JSON ({error.__class__.__name__}); re-run the stage that writes it"
        ) from None


def read_csv(path: Path) -> list[dict[str, str]] | None:
    """Rows of a CSV table as dicts of strings, or None when the file does not exist."""
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
