"""Stage ``report``: every method side by side in ``reports/index.html`` and ``summary.md``.

Collects whatever the classify, dlsa, analyze and pretrain stages left for each method of
``methods:``; a missing file becomes None and the report says so instead of failing.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
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
from stages.outputs import StageOutputs
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
    with StageOutputs(folders=[report_dir()]) as outputs:
        page, summary = render_report(inputs, settings)
        staged = outputs.staged(report_dir())
        write_bytes(staged / "index.html", page.encode())
        write_bytes(staged / "summary.md", summary.encode())
    out = report_dir()
    found = sum(item.classify is not None for item in inputs)
    log(f"report: {len(inputs)} methods ({found} with classifier results) -> {out / 'index.html'}")
    return out / "index.html"


def collect(method: str, params: Params) -> ReportInput:
    """What the stages left for one method; None for each missing piece.

    Raises:
        StageError: a file that exists but is not what its stage writes (not JSON, or of
            another shape), naming the file and the stage to re-run.
    """
    classify_dir, dlsa_dir = classify_results(method), dlsa_results(method)
    analyze_dir = analyze_results(method)
    again = {stage: f"tailbank {stage} --method {method}" for stage in
             ("classify", "dlsa", "analyze", "pretrain")}
    classify = read_json(classify_dir / "metrics.json", _MAPPING_OF_MAPPINGS, again["classify"])
    if classify is not None:
        # the order of classify.kinds, then any other kind the file holds
        order = [k for k in params.classify.kinds if k in classify]
        classify = {kind: classify[kind] for kind in order + sorted(set(classify) - set(order))}
    per_class = {}
    for kind in classify or {}:
        rows = read_csv(classify_dir / "per_class" / f"{kind}.csv",
                        ("class", "train_count", "accuracy"), again["classify"])
        if rows is not None:
            per_class[kind] = rows
    tsne = read_csv(analyze_dir / "tsne.csv", ("x", "y", "label", "group"), again["analyze"])
    return ReportInput(
        method=method,
        classify=classify,
        per_class=per_class or None,
        dlsa=read_json(dlsa_dir / "metrics.json", _MAPPING_OF_MAPPINGS, again["dlsa"]),
        dlsa_filters=read_json(dlsa_dir / "filters.json", _LIST_OF_MAPPINGS, again["dlsa"]),
        analysis=read_json(analyze_dir / "analysis.json", _ANALYSIS, again["analyze"]),
        tsne=tsne or None,
        confusion=read_json(analyze_dir / "confusion.json", _MAPPING_OR_NULL, again["analyze"]),
        pretrain=read_json(pretrain_results(method) / "metrics.json", _MAPPING,
                           again["pretrain"]),
        backbone=params.train_for(method).backbone,
    )


Shape = tuple[str, Callable[[Any], bool]]
_MAPPING: Shape = ("a JSON object", lambda value: isinstance(value, dict))
_MAPPING_OR_NULL: Shape = ("a JSON object or null",
                           lambda value: value is None or isinstance(value, dict))
_MAPPING_OF_MAPPINGS: Shape = (
    "a JSON object of objects",
    lambda value: isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()),
)
_LIST_OF_MAPPINGS: Shape = (
    "a JSON list of objects",
    lambda value: isinstance(value, list) and all(isinstance(v, dict) for v in value),
)
_ANALYSIS: Shape = (
    "an analysis with a 'views' object of objects",
    lambda value: isinstance(value, dict) and isinstance(value.get("views"), dict)
    and all(isinstance(view, dict) for view in value["views"].values()),
)


def read_json(path: Path, shape: Shape = _MAPPING, made_by: str = "the stage") -> Any:
    """The parsed file, or None when it does not exist.

    Raises:
        StageError: one line when it is not UTF-8 JSON of the expected ``shape``.
    """
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StageError(f"{path}: not valid JSON ({error.__class__.__name__}); re-run "
                         f"`{made_by}`") from None
    what, fits = shape
    if not fits(value):
        raise StageError(f"{path}: expected {what}, found a {type(value).__name__} of another "
                         f"shape; re-run `{made_by}`")
    return value


def read_csv(
    path: Path, columns: tuple[str, ...] = (), made_by: str = "the stage"
) -> list[dict[str, str]] | None:
    """Rows of a CSV table as dicts of strings, or None when the file does not exist.

    Raises:
        StageError: one line when it is not UTF-8 or lacks one of ``columns``.
    """
    if not path.is_file():
        return None
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as error:
        raise StageError(f"{path}: not a readable CSV table ({error.__class__.__name__}); "
                         f"re-run `{made_by}`") from None
    missing = [column for column in columns if column not in header]
    if missing:
        raise StageError(f"{path}: lacks the column(s) {', '.join(missing)}; re-run "
                         f"`{made_by}`")
    return rows
