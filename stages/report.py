"""Stage ``report``: every method side by side in ``reports/index.html`` and ``summary.md``.

Collects whatever the classify, dlsa, analyze and pretrain stages left for each method of
``methods:`` and each seed of ``seeds:``; a missing file becomes None and the report says so
instead of failing. Accuracies are shown as the mean over the seeds with a 95 % interval
(`features.seeds`), and a value is bold as best only when a paired bootstrap over the test rows
finds it above every other (`features.seeds.leaders`). Also writes what DVC's own views read
(`stages.views`): the metrics files ``results/summary/<method>.json`` and the tables the
top-level plots overlay, ``reports/plots/<method>/``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.analysis import AnalysisResult
from features.comparison import (
    DLSA_SUFFIX,
    PAPER_SUFFIX,
    PREDICTIONS_FILE,
    SeededPredictions,
    load_predictions,
)
from features.errors import FeaturesError
from features.report import ReportInput, ReportSettings, render_report
from features.report.text import chosen_classifier
from features.seeds import ACCURACY_COLUMNS, accuracy_intervals, gain_intervals, leaders, mean_tree
from stages.errors import StageError
from stages.io import write_bytes
from stages.layout import (
    analyze_results,
    classify_results,
    dlsa_results,
    plot_tables_dir,
    pretrain_results,
    report_dir,
    summary_dir,
)
from stages.outputs import StageOutputs
from stages.params import Params
from stages.progress import log
from stages.views import read_curves, write_plot_tables, write_summary


@dataclass
class Collected:
    """One method's inputs to the report, and the test predictions behind its accuracies."""

    item: ReportInput
    curves: list[list[dict[str, str]]] = field(default_factory=list)
    predictions: dict[str, SeededPredictions] = field(default_factory=dict)
    class_counts: np.ndarray | None = None


def run(params: Params) -> Path:
    """Render the report of every method in ``params.methods``, then every bank of
    ``params.imports``, over ``params.seeds``.

    Returns:
        The path of ``reports/index.html``.
    """
    with StageOutputs(folders=[report_dir(), summary_dir()]) as outputs:
        collected = [collect(name, params) for name in [*params.methods, *params.imports]]
        marks = significance(collected, params)
        settings = ReportSettings(
            title=f"tailbank report: {params.data.dataset}",
            many_above=params.eval.many_above,
            few_below=params.eval.few_below,
            tail_max_count=params.analyze.tail_max_count,
            dlsa_tail_max_count=params.dlsa.tail_max_count,
            seeds=tuple(params.seeds),
            marks=marks,
        )
        inputs = [entry.item for entry in collected]
        page, summary = render_report(inputs, settings)
        staged = outputs.staged(report_dir())
        write_bytes(staged / "index.html", page.encode())
        write_bytes(staged / "summary.md", summary.encode())
        for entry in collected:
            write_views(outputs, entry)
    out = report_dir()
    found = sum(item.classify is not None for item in inputs)
    log(f"report: {len(inputs)} methods ({found} with classifier results), "
        f"{len(params.seeds)} seed(s) -> {out / 'index.html'}")
    return out / "index.html"


def collect(method: str, params: Params) -> Collected:
    """What the stages left for one method over the seeds; None for each missing piece.

    Raises:
        StageError: a file that exists but is not what its stage writes (not JSON, or of
            another shape), naming the file and the stage to re-run.
    """
    seeds = tuple(params.seeds)
    again = {stage: f"tailbank {stage} --method {method}" for stage in
             ("classify", "dlsa", "analyze", "pretrain")}

    def per_seed(folder: Callable[[str, int], Path], name: str, shape: Shape, made_by: str,
                 reader: Callable[..., Any] | None = None) -> dict[int, Any]:
        found = {}
        for seed in seeds:
            path = folder(method, seed) / name
            value = (reader or read_json)(path, shape, f"{made_by} --seed {seed}")
            if value is not None:
                found[seed] = value
        return found

    classify = per_seed(classify_results, "metrics.json", _MAPPING_OF_MAPPINGS, again["classify"])
    dlsa = per_seed(dlsa_results, "metrics.json", _MAPPING_OF_MAPPINGS, again["dlsa"])
    collected = Collected(ReportInput(method=method, backbone=_backbone(method, params)))
    entry = collected.item
    entry.seeds = tuple(classify)
    _fold_classify(collected, classify, params)
    _fold_dlsa(collected, dlsa, params)
    filters = per_seed(dlsa_results, "filters.json", _LIST_OF_MAPPINGS, again["dlsa"])
    entry.dlsa_filters = next(iter(filters.values()), None)
    analysis = _mean(per_seed(analyze_results, "analysis.json", _ANALYSIS, again["analyze"]))
    entry.analysis = None if analysis is None else AnalysisResult.from_json(analysis)
    entry.confusion = next(iter(per_seed(analyze_results, "confusion.json", _MAPPING_OR_NULL,
                                         again["analyze"]).values()), None)
    entry.pretrain = _mean(per_seed(pretrain_results, "metrics.json", _MAPPING,
                                    again["pretrain"]))
    tsne = read_csv(analyze_results(method, seeds[0]) / "tsne.csv", ("x", "y", "label", "group"),
                    f"{again['analyze']} --seed {seeds[0]}")
    entry.tsne = tsne or None
    if method in params.methods:  # an imported bank was trained elsewhere: no curves
        collected.curves = [read_curves(pretrain_results(method, seed) / "live")
                            for seed in seeds]
    return collected


def _backbone(name: str, params: Params) -> str:
    """The network behind a method's bank, or the one an import names."""
    if name in params.imports:
        entry = params.imports[name]
        return entry.backbone or "imported"
    return params.train_for(name).backbone


def write_views(outputs: StageOutputs, entry: Collected) -> None:
    """One method's metrics file and overlay tables (`stages.views`)."""
    item = entry.item
    write_summary(outputs.staged(summary_dir()), item, main_gain(item, "gain"))
    write_plot_tables(outputs.staged(plot_tables_dir() / item.method), item, entry.curves)


def _fold_classify(collected: Collected, per_seed: dict[int, Any], params: Params) -> None:
    """Mean metrics with intervals per kind (the order of classify.kinds, then any other)."""
    entry = collected.item
    if not per_seed:
        return
    kinds = [k for k in params.classify.kinds if all(k in m for m in per_seed.values())]
    others = sorted(set.intersection(*(set(m) for m in per_seed.values())) - set(kinds))
    folded, per_class = {}, {}
    for kind in kinds + others:
        metrics = [per_seed[seed][kind] for seed in per_seed]
        predictions = _predictions(collected, classify_results, per_seed, kind)
        folded[kind] = mean_tree(metrics)
        folded[kind]["ci"] = _ci(accuracy_intervals(
            metrics, predictions, collected.class_counts, params.eval.many_above,
            params.eval.few_below, seed=min(per_seed)))
        rows = [read_csv(classify_results(entry.method, seed) / "per_class" / f"{kind}.csv",
                         ("class", "train_count", "accuracy"),
                         f"tailbank classify --method {entry.method} --seed {seed}")
                for seed in per_seed]
        if all(rows):
            per_class[kind] = _mean_rows(rows)
    entry.classify = folded
    entry.per_class = per_class or None


def _fold_dlsa(collected: Collected, per_seed: dict[int, Any], params: Params) -> None:
    """Mean base, gated and paper base + DLSA metrics per base kind, with the intervals of
    both gains and the number of filters the gate chose on each seed."""
    if not per_seed:
        return
    folded = {}
    for kind in params.dlsa.base_kinds:
        if not all(kind in m for m in per_seed.values()):
            continue
        entries = [per_seed[seed][kind] for seed in per_seed]
        plain = _predictions(collected, dlsa_results, per_seed, kind, keep=False)
        folded[kind] = mean_tree(entries)
        folded[kind]["filters_per_seed"] = [entry.get("filters") for entry in entries]
        for side, suffix, gain_key in (("dlsa", DLSA_SUFFIX, "gain"),
                                       ("dlsa_paper", DLSA_SUFFIX + PAPER_SUFFIX, "gain_paper")):
            dlsa = _predictions(collected, dlsa_results, per_seed, f"{kind}{suffix}")
            sides = [e.get(side) or {} for e in entries]
            if isinstance(folded[kind].get(side), dict):
                folded[kind][side]["ci"] = _ci(accuracy_intervals(
                    sides, dlsa, collected.class_counts, params.eval.many_above,
                    params.eval.few_below, seed=min(per_seed)))
            gains = gain_intervals([e.get("base") or {} for e in entries], sides,
                                   (plain, dlsa) if plain and dlsa else None,
                                   collected.class_counts, params.eval.many_above,
                                   params.eval.few_below, seed=min(per_seed))
            folded[kind][gain_key] = {
                column: (None if interval is None else
                         {"value": interval.value, "low": interval.low, "high": interval.high})
                for column, interval in gains.items()}
    collected.item.dlsa = folded or None


def _predictions(
    collected: Collected,
    folder: Callable[[str, int], Path],
    per_seed: dict[int, Any],
    key: str,
    keep: bool = True,
) -> SeededPredictions | None:
    """A classifier's test predictions over the seeds (kept in ``collected`` for the tests
    between rows unless ``keep`` is False); None when a file lacks them (an older run's
    results, shown without intervals)."""
    method = collected.item.method
    arrays = []
    for seed in per_seed:
        path = folder(method, seed) / PREDICTIONS_FILE
        try:
            arrays.append(load_predictions(path, key))
        except FeaturesError:
            return None
    try:
        predictions = SeededPredictions.from_seeds(f"{method}:{key}", tuple(per_seed), arrays)
    except FeaturesError as error:
        raise StageError(str(error)) from None
    if collected.class_counts is None:
        with np.load(folder(method, next(iter(per_seed))) / PREDICTIONS_FILE,
                     allow_pickle=False) as archive:
            if "class_counts" in archive.files:
                collected.class_counts = np.asarray(archive["class_counts"])
    if keep:
        collected.predictions[key] = predictions
    return predictions


def _ci(intervals: dict[str, Any]) -> dict[str, list[float] | None]:
    return {column: (None if interval is None else [interval.low, interval.high])
            for column, interval in intervals.items()}


def _mean(per_seed: dict[int, Any]) -> Any:
    values = list(per_seed.values())
    return mean_tree(values) if values else None


def _mean_rows(tables: Sequence[list[dict[str, str]]]) -> list[dict[str, str]]:
    """Per-class rows of the seeds: the same classes and counts, accuracy averaged."""
    rows = []
    for group in zip(*tables, strict=True):
        values = [float(row["accuracy"]) for row in group if row.get("accuracy") not in ("", None)]
        rows.append({**group[0], "accuracy": f"{np.mean(values):.6g}" if values else ""})
    return rows


def significance(collected: Sequence[Collected], params: Params) -> dict[str, dict[str, str]]:
    """Table column -> {row key: "best" | "tied"}, for the accuracy columns.

    Rows are keyed "<method>:<classifier>" (and "<method>:<kind>+dlsa"); the glance table's
    rows are each method's classifier chosen on val ("glance:" + column).
    """
    counts = next((c.class_counts for c in collected if c.class_counts is not None), None)
    if counts is None:
        return {}
    everything, glance = {}, {}
    means: dict[str, dict[str, float | None]] = {column: {} for column in ACCURACY_COLUMNS}
    glance_means: dict[str, dict[str, float | None]] = {c: {} for c in ACCURACY_COLUMNS}
    for entry in collected:
        item = entry.item
        rows = {kind: (item.classify or {}).get(kind) for kind in item.classify or {}}
        rows |= {f"{kind}{DLSA_SUFFIX}": (entry_.get("dlsa") or {})
                 for kind, entry_ in (item.dlsa or {}).items()}
        chosen = chosen_classifier(item)
        for key, metrics in rows.items():
            if key not in entry.predictions or metrics is None:
                continue
            name = f"{item.method}:{key}"
            everything[name] = entry.predictions[key]
            for column in ACCURACY_COLUMNS:
                means[column][name] = metrics.get(column)
            if key == chosen:
                glance[name] = entry.predictions[key]
                for column in ACCURACY_COLUMNS:
                    glance_means[column][name] = metrics.get(column)
    seed = min(params.seeds)
    marks = {}
    for column in ACCURACY_COLUMNS:
        marks[column] = leaders(everything, means[column], counts, column,
                                params.eval.many_above, params.eval.few_below, seed=seed)
        marks[f"glance:{column}"] = leaders(glance, glance_means[column], counts, column,
                                            params.eval.many_above, params.eval.few_below,
                                            seed=seed)
    return marks


def main_gain(item: ReportInput, gain_key: str) -> float | None:
    """An overall DLSA gain on the base kind whose gated base + DLSA is best on val."""
    entries = item.dlsa or {}
    if not entries:
        return None
    kind = max(entries, key=lambda k: (entries[k].get("val_overall_dlsa") or -1.0,
                                       -list(entries).index(k)))
    gain = (entries[kind].get(gain_key) or {}).get("overall")
    return None if gain is None else gain.get("value")


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
