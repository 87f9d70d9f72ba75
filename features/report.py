"""The report of every method side by side: one self-contained HTML page and a Markdown summary.

Pure rendering: plain dicts and lists in (one `ReportInput` per method, read from the stages'
outputs by the caller), text out. Plots are drawn with matplotlib's Agg canvas (no pyplot, no
global state) into PNGs that are embedded as base64 data URIs, so the page needs no other
file. Figure sizes, dpi and style are fixed and the PNGs carry no software or time stamp, so
the same input gives the same bytes. Anything missing for a method (no DLSA run, no analysis)
is said in its section instead of failing.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

SHOT_COLUMNS = ("overall", "many", "medium", "few")
METRIC_COLUMNS = (*SHOT_COLUMNS, "mcc", "nmi", "ece")
# Higher is better for every column but ECE.
_LOWER_IS_BETTER = frozenset({"ece"})
_DPI = 100
_HEAD, _TAIL = "#1f77b4", "#ff7f0e"
_GROUP_COLOURS = {"overall": "#4d4d4d", "many": "#1f77b4", "medium": "#2ca02c", "few": "#d62728"}
_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.hashsalt": "tailbank",
}


@dataclass(frozen=True)
class ReportInput:
    """Everything the report shows of one method; a field is None when its stage left nothing.

    Attributes:
        method: Method name (a key of `methods:`).
        classify: Classifier kind -> test metrics {overall, many, medium, few, mcc, nmi, ece,
            val_overall, ...}.
        per_class: Classifier kind -> rows {class, train_count, accuracy} (test accuracy).
        dlsa: Base kind -> {"base": metrics, "dlsa": metrics, "val_overall_dlsa"}.
        dlsa_filters: One dict per DLSA filter: index, threshold, routed_share / seen_share /
            separation_accuracy / tail_share_seen per split, cluster_sizes, cluster_purity, ...
        analysis: The dict of `features.analysis.analyze_bank`.
        tsne: Rows {x, y, label, group} with group "head" or "tail".
        confusion: {"matrix": [B][B] row-normalised, "bins": [{classes, min_count, max_count}]},
            classes sorted by training frequency, most frequent bin first.
        pretrain: The backbone's training summary {best_epoch, best_val_acc, ...}.
        backbone: The backbone architecture's name.
    """

    method: str
    classify: Mapping[str, Mapping[str, Any]] | None = None
    per_class: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
    dlsa: Mapping[str, Mapping[str, Any]] | None = None
    dlsa_filters: Sequence[Mapping[str, Any]] | None = None
    analysis: Mapping[str, Any] | None = None
    tsne: Sequence[Mapping[str, Any]] | None = None
    confusion: Mapping[str, Any] | None = None
    pretrain: Mapping[str, Any] | None = None
    backbone: str | None = None


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
    """

    title: str = "tailbank report"
    many_above: int = 100
    few_below: int = 20
    tail_max_count: int = 50
    dlsa_tail_max_count: int | None = None


@dataclass(frozen=True)
class _Row:
    """One line of the summary table: a method, a classifier and its test metrics."""

    method: str
    classifier: str
    metrics: Mapping[str, Any]


def render_report(
    inputs: Sequence[ReportInput], settings: ReportSettings | None = None
) -> tuple[str, str]:
    """The HTML page (plots embedded) and the Markdown summary of some methods.

    Args:
        inputs: One entry per method, in the order to show them.
        settings: Group definitions and title; None = defaults.

    Returns:
        (html, markdown); the same arguments give the same strings.
    """
    settings = settings or ReportSettings()
    with matplotlib.rc_context(_STYLE):
        sections = _sections(list(inputs), settings)
    return _html_page(sections, settings), _markdown(list(inputs), settings)


# --- content shared by both formats ----------------------------------------------------------


def summary_rows(inputs: Sequence[ReportInput]) -> list[_Row]:
    """Every method x classifier, each DLSA base kind right after its method's classifiers."""
    rows = []
    for item in inputs:
        for kind, metrics in (item.classify or {}).items():
            rows.append(_Row(item.method, kind, metrics))
        for kind, entry in (item.dlsa or {}).items():
            rows.append(_Row(item.method, f"{kind} + DLSA", entry.get("dlsa") or {}))
    return rows


def chosen_classifier(item: ReportInput) -> str | None:
    """The classifier kind with the best val accuracy (first one on a tie); None without any."""
    best, best_value = None, -math.inf
    for kind, metrics in (item.classify or {}).items():
        value = _number(metrics.get("val_overall"))
        value = -math.inf if value is None else value
        if best is None or value > best_value:
            best, best_value = kind, value
    return best


def ranking(inputs: Sequence[ReportInput]) -> list[str]:
    """Sentences comparing the methods, each computed from the numbers (no fixed conclusions)."""
    sentences = []
    rows = summary_rows(inputs)
    for column, label in (("overall", "overall"), ("few", "few-shot")):
        best = _best_row(rows, column)
        if best is not None:
            sentences.append(
                f"Best {label} test accuracy: {best.method} with the {best.classifier} classifier "
                f"({_fmt(best.metrics[column])})."
            )
    sentences += _dlsa_sentences(inputs)
    features = {item.method: _view(item, "features") for item in inputs}
    picks = (  # label, where in a view's analysis, higher is better
        ("lowest \u03c1 (features, overall)", ("representation", "overall", "rho"), False),
        ("highest few-shot test kNN purity", ("knn", "query", "purity", "few"), True),
        ("best head/tail linear separability", ("separability", "balanced_accuracy"), True),
        ("purest k-means clusters", ("kmeans", "purity"), True),
    )
    for label, path, higher in picks:
        values = {m: _number(_dig(view, path)) for m, view in features.items()}
        values = {m: v for m, v in values.items() if v is not None}
        if values:
            # sorted() is stable: on a tie the method listed first wins
            method = sorted(values, key=values.__getitem__, reverse=higher)[0]
            sentences.append(f"The {label}: {method} ({_fmt(values[method])}).")
    sentences += _why_sentences(inputs, features)
    if not sentences:
        sentences.append("No numbers to rank yet: no method has classifier or analysis results.")
    return sentences


def _why_sentences(
    inputs: Sequence[ReportInput], features: Mapping[str, Mapping[str, Any] | None]
) -> list[str]:
    """Rank correlations between feature statistics and few-shot accuracy across methods."""
    few = {}
    for item in inputs:
        kind = chosen_classifier(item)
        value = _number((item.classify or {}).get(kind, {}).get("few")) if kind else None
        if value is not None:
            few[item.method] = value
    sentences = []
    statistics = (
        ("\u03c1 (features, overall)", ("representation", "overall", "rho")),
        ("few-shot kNN purity", ("knn", "query", "purity", "few")),
    )
    for label, path in statistics:
        pairs = [
            (value, few[m])
            for m, view in features.items()
            if m in few and (value := _number(_dig(view, path))) is not None
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
    """Spearman rank correlation (average ranks on ties); None when a side is constant."""
    ranks = [_average_ranks(np.asarray(values, np.float64)) for values in (a, b)]
    centred = [r - r.mean() for r in ranks]
    scale = math.sqrt(float((centred[0] ** 2).sum() * (centred[1] ** 2).sum()))
    return None if scale == 0 else float((centred[0] * centred[1]).sum() / scale)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def missing_notes(inputs: Sequence[ReportInput]) -> dict[str, list[str]]:
    """Section -> methods that have nothing for it."""
    return {
        "classify": [item.method for item in inputs if not item.classify],
        "dlsa": [item.method for item in inputs if not item.dlsa],
        "analysis": [item.method for item in inputs if item.analysis is None],
    }


def _dlsa_sentences(inputs: Sequence[ReportInput]) -> list[str]:
    pairs = []
    for item in inputs:
        for kind, entry in (item.dlsa or {}).items():
            base, dlsa = entry.get("base") or {}, entry.get("dlsa") or {}
            changes = {
                column: _diff(dlsa.get(column), base.get(column)) for column in ("overall", "few")
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
        sentences.append(
            f"DLSA raised {label} accuracy for {raised} of {len(deltas)} method/base pairs "
            f"(mean change {mean:+.3f}; largest {top:+.3f} for {method} on {kind})."
        )
    return sentences


# --- sections --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    """One part of the page: an anchor, a heading, and HTML blocks."""

    anchor: str
    title: str
    blocks: list[str]


def _sections(inputs: list[ReportInput], settings: ReportSettings) -> list[_Section]:
    missing = missing_notes(inputs)
    return [
        _Section("summary", "Classifiers: test accuracy per shot group", _summary_blocks(inputs)),
        _Section(
            "per-class", "Accuracy per shot group and per class", _accuracy_blocks(inputs, settings)
        ),
        _Section("confusion", "Confusion between frequency bins", _confusion_blocks(inputs)),
        _Section("features", "Feature quality: head vs tail", _feature_blocks(inputs, missing)),
        _Section("dlsa", "DLSA: flow filters", _dlsa_blocks(inputs, missing)),
        _Section("ranking", "Ranking", _ranking_blocks(inputs)),
    ]


def _summary_blocks(inputs: list[ReportInput]) -> list[str]:
    rows = summary_rows(inputs)
    blocks = [
        _p(
            "Test accuracy of the classifiers trained on each method's frozen features, overall "
            "and per shot group, with Matthews correlation (MCC), normalised mutual information "
            "(NMI) and expected calibration error (ECE, lower is better). The best value of "
            "each column is bold. At a glance: each method with the classifier that has the "
            "best val accuracy."
        )
    ]
    glance = [
        _Row(item.method, kind, item.classify[kind])
        for item in inputs
        if (kind := chosen_classifier(item)) is not None
    ]
    if glance:
        blocks.append(_html_table(_summary_header(), _summary_cells(glance, bold=_html_bold)))
    missing = [item.method for item in inputs if not item.classify]
    if missing:
        blocks.append(_note(f"No classifier results for: {', '.join(missing)}."))
    if rows:
        # every method x classifier is long (tens of rows): folded, so the plots stay in view
        table = _html_table(_summary_header(), _summary_cells(rows, bold=_html_bold))
        blocks.append(
            f"<details><summary>All {len(rows)} rows: every method \u00d7 classifier, and "
            "\u201ckind + DLSA\u201d for the DLSA cascade in front of that base classifier "
            f"(click to open)</summary>\n{table}\n</details>"
        )
    backbones = [
        [
            item.method,
            item.backbone or str(_dig(item.analysis, ("backbone",)) or "\u2013"),
            _fmt(_dig(item.pretrain, ("best_epoch",)), digits=0),
            _fmt(_dig(item.pretrain, ("best_val_acc",))),
        ]
        for item in inputs
        if item.pretrain is not None or item.analysis is not None or item.backbone
    ]
    if backbones:
        blocks.append(_p("Backbones: the pretraining epoch chosen on val and its val accuracy."))
        blocks.append(_html_table(["method", "backbone", "best epoch", "val accuracy"], backbones))
    return blocks


def _accuracy_blocks(inputs: list[ReportInput], settings: ReportSettings) -> list[str]:
    blocks = [
        _p(
            "Each method is shown with the classifier that has the best val accuracy (named "
            "under its bars); the table above has all of them."
        )
    ]
    for png, alt in (
        (_shot_group_plot(inputs), "accuracy per shot group"),
        (_per_class_plot(inputs, settings), "per-class accuracy against training count"),
    ):
        blocks.append(_img(png, alt) if png else _note(f"No data for the {alt} plot."))
    return blocks


def _confusion_blocks(inputs: list[ReportInput]) -> list[str]:
    blocks = [
        _p(
            "Confusion of each backbone's own classifier head on test (DLSA Fig. 1): classes "
            "sorted by training frequency and cut into bins, bin 1 the most frequent. Rows are "
            "true bins and sum to 1; mass right of the diagonal means tail images predicted as "
            "more frequent classes."
        )
    ]
    png = _confusion_plot(inputs)
    blocks.append(
        _img(png, "confusion between frequency bins")
        if png
        else _note("No confusion matrix: no method has an analysis of a bank with logits yet.")
    )
    lacking = [item.method for item in inputs if item.confusion is None]
    if png and lacking:
        blocks.append(_note(f"No confusion matrix for: {', '.join(lacking)}."))
    return blocks


def _feature_blocks(inputs: list[ReportInput], missing: dict[str, list[str]]) -> list[str]:
    blocks = [
        _p(
            "How each backbone's features place head and tail classes, on the test split "
            "against the train split. \u03c1 = D_intra / D_inter (MBIB Eq. 15\u201317; lower "
            "means tighter, better separated classes), per view of the bank; kNN purity: share "
            "of a test image's nearest train neighbours (cosine) of its own class; k-means "
            "purity: share of each cluster's majority class (train); head/tail: balanced "
            "accuracy of a linear probe telling tail images from head images."
        )
    ]
    if missing["analysis"]:
        blocks.append(_note(f"No feature analysis for: {', '.join(missing['analysis'])}."))
    analysed = [item for item in inputs if item.analysis is not None]
    if not analysed:
        return blocks
    blocks.append(_html_table(_separability_header(), _separability_cells(analysed)))
    reasons = _probe_reasons(analysed)
    if reasons:
        blocks.append(_note("Head/tail probe not measured: " + "; ".join(reasons) + "."))
    posterior = _posterior_cells(analysed)
    if posterior:
        blocks.append(
            _p(
                "Mean positive posterior (MBIB Sec. 4.5): the backbone head's softmax "
                "probability of the true class, averaged per class, then per group "
                "(ideally 1)."
            )
        )
        blocks.append(_html_table(["method", *SHOT_COLUMNS], posterior))
    for png, alt in (
        (_rho_plot(analysed), "rho per shot group"),
        (_cluster_plot(analysed), "k-means cluster sizes and purity"),
        (_tsne_plot(inputs), "t-SNE of test features, head and tail"),
    ):
        blocks.append(_img(png, alt) if png else _note(f"No data for the {alt} plot."))
    return blocks


def _dlsa_blocks(inputs: list[ReportInput], missing: dict[str, list[str]]) -> list[str]:
    blocks = [
        _p(
            "Each DLSA filter routes the images its flow finds most likely to a cluster-aided "
            "classifier. Separation accuracy: the share of routed test images that belong to "
            "tail classes (DLSA Fig. 7); chance is the tail share of the images reaching the "
            "filter. Routed share: the share of all test images the filter routes."
        )
    ]
    if missing["dlsa"]:
        if len(missing["dlsa"]) == len(inputs):
            blocks.append(_note("No DLSA results: the dlsa stage has no output for any method."))
            return blocks
        blocks.append(
            _note(
                f"The dlsa stage has no output for: {', '.join(missing['dlsa'])}; "
                "they are left out here."
            )
        )
    comparison = _dlsa_cells(inputs)
    if comparison:
        blocks.append(_p("Test accuracy of each base classifier alone and with the cascade:"))
        blocks.append(_html_table(_DLSA_HEADER, comparison))
    png = _separation_plot(inputs)
    if png:
        blocks.append(_img(png, "separation accuracy per filter"))
    cells = _filter_cells(inputs)
    if cells:
        blocks.append(_html_table(_FILTER_HEADER, cells))
    return blocks


def _ranking_blocks(inputs: list[ReportInput]) -> list[str]:
    items = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in ranking(inputs))
    return [
        _p("Generated from the numbers above; test accuracy decides \u201cbest\u201d here."),
        f"<ul>{items}</ul>",
    ]


# --- tables ----------------------------------------------------------------------------------

_FILTER_HEADER = [
    "method",
    "filter",
    "separation accuracy",
    "chance",
    "routed share",
    "pure clusters",
    "clusters",
]


_DLSA_HEADER = [
    "method",
    "base classifier",
    "overall",
    "overall + DLSA",
    "few",
    "few + DLSA",
    "ECE",
    "ECE + DLSA",
]


def _dlsa_cells(inputs: list[ReportInput]) -> list[list[str]]:
    cells = []
    for item in inputs:
        for kind, entry in (item.dlsa or {}).items():
            line = [item.method, kind]
            for column in ("overall", "few", "ece"):
                line += [_fmt(_dig(entry, (side, column))) for side in ("base", "dlsa")]
            cells.append(line)
    return cells


def _summary_header() -> list[str]:
    return ["method", "classifier", "overall", "many", "medium", "few", "MCC", "NMI", "ECE"]


def _summary_cells(rows: list[_Row], bold: Callable[[str], str]) -> list[list[str]]:
    best = {column: _best_value(rows, column) for column in METRIC_COLUMNS}
    cells = []
    for row in rows:
        line = [row.method, row.classifier]
        for column in METRIC_COLUMNS:
            value = _number(row.metrics.get(column))
            text = _fmt(value)
            line.append(bold(text) if value is not None and value == best[column] else text)
        cells.append(line)
    return cells


def _separability_header() -> list[str]:
    return [
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


def _separability_cells(analysed: list[ReportInput]) -> list[list[str]]:
    cells = []
    for item in analysed:
        for view, section in _ordered_views(item):
            rho = [_dig(section, ("representation", g, "rho")) for g in SHOT_COLUMNS]
            purity = [_dig(section, ("knn", "query", "purity", g)) for g in SHOT_COLUMNS]
            cells.append(
                [
                    item.method,
                    view,
                    *map(_fmt, rho),
                    *map(_fmt, purity),
                    _fmt(_dig(section, ("kmeans", "purity"))),
                    _fmt(_dig(section, ("separability", "balanced_accuracy"))),
                ]
            )
    return cells


def _ordered_views(item: ReportInput) -> list[tuple[str, Mapping[str, Any]]]:
    """The analysed views, `features` first, then the extra views by name."""
    views = (item.analysis or {}).get("views") or {}
    return sorted(views.items(), key=lambda entry: (entry[0] != "features", entry[0]))


def _probe_reasons(analysed: list[ReportInput]) -> list[str]:
    reasons = []
    for item in analysed:
        for view, section in _ordered_views(item):
            reason = _dig(section, ("separability", "reason"))
            if reason:
                reasons.append(f"{item.method} {view}: {reason}")
    return reasons


def _posterior_cells(analysed: list[ReportInput]) -> list[list[str]]:
    return [
        [item.method, *(_fmt(_dig(item.analysis, ("posterior", g))) for g in SHOT_COLUMNS)]
        for item in analysed
        if item.analysis.get("posterior") is not None
    ]


def _filter_cells(inputs: list[ReportInput]) -> list[list[str]]:
    cells = []
    for item in inputs:
        for entry in item.dlsa_filters or ():
            cells.append(
                [
                    item.method,
                    str(int(entry.get("index", 0)) + 1),
                    _fmt(_dig(entry, ("separation_accuracy", "test"))),
                    _fmt(_dig(entry, ("tail_share_seen", "test"))),
                    _fmt(_dig(entry, ("routed_share", "test"))),
                    _fmt(entry.get("pure_clusters"), digits=0),
                    str(len(entry.get("cluster_sizes") or ())),
                ]
            )
    return cells


# --- plots -----------------------------------------------------------------------------------


def _shot_group_plot(inputs: list[ReportInput]) -> bytes | None:
    chosen = [(item, chosen_classifier(item)) for item in inputs]
    chosen = [(item, kind) for item, kind in chosen if kind is not None]
    if not chosen:
        return None
    figure = _figure(max(6.0, 1.0 * len(chosen) + 2.0), 3.4)
    axes = figure.add_subplot()
    width = 0.8 / len(SHOT_COLUMNS)
    positions = np.arange(len(chosen))
    for offset, group in enumerate(SHOT_COLUMNS):
        values = [_nan(item.classify[kind].get(group)) for item, kind in chosen]
        axes.bar(
            positions + (offset - 1.5) * width,
            values,
            width,
            label=group,
            color=_GROUP_COLOURS[group],
        )
    axes.set_xticks(positions, [f"{item.method}\n{kind}" for item, kind in chosen], fontsize=8)
    # zoomed to the data (in steps of 0.1): accuracies near 1 would all look alike from 0
    shown = [_number(item.classify[kind].get(g)) for item, kind in chosen for g in SHOT_COLUMNS]
    low = min((value for value in shown if value is not None), default=0.0)
    axes.set_ylim(max(0.0, math.floor((low - 0.05) * 10) / 10), 1.02)
    axes.set_ylabel("test accuracy (axis starts above 0)" if low > 0.15 else "test accuracy")
    axes.set_title("Test accuracy per shot group (classifier chosen on val)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def _per_class_plot(inputs: list[ReportInput], settings: ReportSettings) -> bytes | None:
    series = []
    for item in inputs:
        kind = chosen_classifier(item)
        rows = (item.per_class or {}).get(kind) if kind else None
        if rows:
            series.append((f"{item.method} ({kind})", rows))
    if not series:
        return None
    figure = _figure(8.0, 3.6)
    axes = figure.add_subplot()
    # shot-group boundaries, so a reader sees which points are "few" without counting
    for bound, text in (
        (settings.few_below, "few | medium"),
        (settings.many_above, "medium | many"),
    ):
        axes.axvline(bound, color="#999999", linestyle="--", linewidth=0.8)
        axes.text(bound, 1.04, text, ha="center", va="bottom", fontsize=7, color="#666666")
    for index, (label, rows) in enumerate(series):
        axes.scatter(
            [float(row["train_count"]) for row in rows],
            [_nan(row["accuracy"]) for row in rows],
            marker=_MARKERS[index % len(_MARKERS)],
            s=18,
            alpha=0.75,
            label=label,
            color=_colour(index),
            linewidths=0,
        )
    axes.set_xscale("log")
    axes.set_xlabel("training images of the class (log scale)")
    axes.set_ylabel("test accuracy of the class")
    axes.set_ylim(-0.03, 1.1)
    axes.set_title("Per-class test accuracy against training count", pad=14)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def _confusion_plot(inputs: list[ReportInput]) -> bytes | None:
    shown = [item for item in inputs if item.confusion and item.confusion.get("matrix")]
    if not shown:
        return None
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = _figure(2.6 * columns + 0.8, 2.6 * rows + 0.4)
    image = None
    for index, item in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        matrix = np.asarray(item.confusion["matrix"], np.float64)
        image = axes.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
        ticks = np.arange(len(matrix))
        axes.set_xticks(ticks, [str(t + 1) for t in ticks], fontsize=7)
        axes.set_yticks(ticks, [str(t + 1) for t in ticks], fontsize=7)
        axes.grid(False)
        axes.set_title(item.method)
        axes.set_xlabel("predicted bin", fontsize=8)
        if index % columns == 0:
            axes.set_ylabel("true bin (1 = most frequent)", fontsize=8)
    figure.colorbar(image, ax=figure.axes, shrink=0.8, label="share of the true bin's images")
    return _png(figure)


def _rho_plot(analysed: list[ReportInput]) -> bytes | None:
    values = {
        item.method: [
            _nan(_dig(item.analysis, ("views", "features", "representation", g, "rho")))
            for g in SHOT_COLUMNS
        ]
        for item in analysed
    }
    if all(np.isnan(v).all() for v in values.values()):
        return None
    figure = _figure(max(6.0, 0.9 * len(values) + 2.0), 3.2)
    axes = figure.add_subplot()
    width = 0.8 / len(SHOT_COLUMNS)
    positions = np.arange(len(values))
    for offset, group in enumerate(SHOT_COLUMNS):
        axes.bar(
            positions + (offset - 1.5) * width,
            [v[offset] for v in values.values()],
            width,
            label=group,
            color=_GROUP_COLOURS[group],
        )
    axes.set_xticks(positions, list(values), fontsize=8)
    axes.set_ylabel("\u03c1 = D_intra / D_inter")
    axes.set_title("\u03c1 per shot group (features, test; lower is better)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def _cluster_plot(analysed: list[ReportInput]) -> bytes | None:
    series = []
    for item in analysed:
        clusters = _dig(item.analysis, ("views", "features", "kmeans", "clusters"))
        if clusters:
            ordered = sorted(clusters, key=lambda cluster: -int(cluster["size"]))
            series.append((item.method, ordered))
    if not series:
        return None
    figure = _figure(10.0, 3.4)
    sizes_axes = figure.add_subplot(1, 2, 1)
    purity_axes = figure.add_subplot(1, 2, 2)
    for index, (method, clusters) in enumerate(series):
        ranks = np.arange(1, len(clusters) + 1)
        colour = _colour(index)
        sizes_axes.plot(
            ranks,
            [max(int(c["size"]), 1) for c in clusters],
            marker=".",
            color=colour,
            label=method,
            linewidth=0.9,
        )
        purity_axes.plot(
            ranks,
            [_nan(c["purity"]) for c in clusters],
            marker=".",
            color=colour,
            label=method,
            linewidth=0.9,
        )
    sizes_axes.set_yscale("log")
    sizes_axes.set_xlabel("cluster rank (largest first)")
    sizes_axes.set_ylabel("train images in the cluster")
    sizes_axes.set_title("k-means cluster sizes (features, train)")
    purity_axes.set_xlabel("cluster rank (largest first)")
    purity_axes.set_ylabel("share of the majority class")
    purity_axes.set_ylim(0, 1.05)
    purity_axes.set_title("k-means cluster purity")
    purity_axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def _tsne_plot(inputs: list[ReportInput]) -> bytes | None:
    shown = [item for item in inputs if item.tsne]
    if not shown:
        return None
    columns = min(4, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = _figure(2.8 * columns + 0.2, 2.8 * rows + 0.6)
    for index, item in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        for group, colour in (("head", _HEAD), ("tail", _TAIL)):
            points = [(float(r["x"]), float(r["y"])) for r in item.tsne if r["group"] == group]
            if points:
                x, y = zip(*points, strict=True)
                axes.scatter(x, y, s=5, color=colour, label=group, alpha=0.7, linewidths=0)
        axes.set_xticks([])
        axes.set_yticks([])
        axes.grid(False)
        # a frame on all four sides: t-SNE axes have no meaning, only the panel matters
        for spine in axes.spines.values():
            spine.set_visible(True)
            spine.set_color("#cccccc")
        axes.set_title(item.method)
    figure.suptitle("t-SNE of test features (class-stratified sample)")
    figure.legend(
        handles=[
            Line2D([], [], marker="o", linestyle="", color=colour, label=f"{group} classes")
            for group, colour in (("head", _HEAD), ("tail", _TAIL))
        ],
        loc="outside lower center",
        ncols=2,
    )
    return _png(figure)


def _separation_plot(inputs: list[ReportInput]) -> bytes | None:
    series = [(item.method, item.dlsa_filters) for item in inputs if item.dlsa_filters]
    if not series:
        return None
    figure = _figure(8.0, 3.4)
    axes = figure.add_subplot()
    for index, (method, filters) in enumerate(series):
        steps = [int(entry.get("index", i)) + 1 for i, entry in enumerate(filters)]
        accuracy = [_nan(_dig(entry, ("separation_accuracy", "test"))) for entry in filters]
        chance = [_nan(_dig(entry, ("tail_share_seen", "test"))) for entry in filters]
        colour = _colour(index)
        axes.plot(steps, accuracy, marker="o", color=colour, label=method)
        axes.plot(steps, chance, linestyle=":", color=colour, linewidth=0.9)
    axes.plot([], [], linestyle=":", color="#4d4d4d", label="chance (dotted)")
    axes.set_xticks(sorted({int(e.get("index", 0)) + 1 for _, f in series for e in f}))
    axes.set_xlabel("filter")
    axes.set_ylabel("tail share of routed test images")
    axes.set_ylim(0, 1.05)
    axes.set_title("DLSA separation accuracy per filter (test)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _colour(index: int) -> str:
    return matplotlib.colormaps["tab10"](index % 10)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _png(figure: Figure) -> bytes:
    """PNG bytes without software or time metadata (same figure, same bytes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem 2rem 4rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.2rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd;
     padding-bottom: 0.2rem; }
p { max-width: 60rem; }
nav ol { margin: 0.8rem 0; padding-left: 1.5rem; }
nav li { margin: 0.1rem 0; }
.groups { background: #f4f6f8; border-left: 4px solid #1f77b4; padding: 0.5rem 0.8rem; }
.note { background: #fff6e0; border-left: 4px solid #e0a000; padding: 0.4rem 0.8rem; }
.scroll { overflow-x: auto; margin: 0.6rem 0 1rem; }
table { border-collapse: collapse; font-size: 0.82rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2rem 0.55rem; border-bottom: 1px solid #e6e6e6; text-align: right;
         white-space: nowrap; }
th { background: #f4f6f8; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
tr.first td { border-top: 2px solid #bbb; }
details summary { cursor: pointer; color: #1f5fa8; margin: 0.4rem 0; }
img { max-width: 100%; height: auto; display: block; margin: 0.6rem 0 1rem; }
"""


def _html_page(sections: list[_Section], settings: ReportSettings) -> str:
    title = html.escape(settings.title)
    toc = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(
        f'<section id="{s.anchor}">\n<h2>{html.escape(s.title)}</h2>\n'
        + "\n".join(s.blocks)
        + "\n</section>"
        for s in sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n"
        + _p(
            "Long-tailed recognition: each method trains a backbone, whose frozen features "
            "are then classified and analysed. Every number is on the balanced test split; "
            "epochs and hyper-parameters were chosen on the balanced val split."
        )
        + f'\n<p class="groups">{html.escape(_groups_line(settings))}</p>\n'
        f"<nav><ol>{toc}</ol></nav>\n{body}\n</body>\n</html>\n"
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table; cells are escaped unless `_html_bold` marked them. A new method starts a band."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    lines, previous = [], None
    for row in rows:
        first = ' class="first"' if previous is not None and row[0] != previous else ""
        previous = row[0]
        cells = "".join(f"<td>{_cell_html(cell)}</td>" for cell in row)
        lines.append(f"<tr{first}>{cells}</tr>")
    return (
        f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(lines)
        + "\n</tbody></table></div>"
    )


_BOLD = "\x00b"


def _html_bold(text: str) -> str:
    return _BOLD + text


def _cell_html(cell: str) -> str:
    if cell.startswith(_BOLD):
        return f"<b>{html.escape(cell.removeprefix(_BOLD))}</b>"
    return html.escape(cell)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _groups_line(settings: ReportSettings) -> str:
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


# --- Markdown --------------------------------------------------------------------------------


def _markdown(inputs: list[ReportInput], settings: ReportSettings) -> str:
    lines = [f"# {_md_text(settings.title)}", "", _groups_line(settings), ""]
    lines += ["## Classifiers: test accuracy per shot group", ""]
    rows = summary_rows(inputs)
    if rows:
        lines += _md_table(_summary_header(), _summary_cells(rows, bold=lambda t: f"**{t}**"))
    missing = missing_notes(inputs)
    if missing["classify"]:
        lines += [f"No classifier results for: {', '.join(missing['classify'])}.", ""]
    lines += ["## Feature quality: head vs tail", ""]
    analysed = [item for item in inputs if item.analysis is not None]
    if analysed:
        lines += _md_table(_separability_header(), _separability_cells(analysed))
        posterior = _posterior_cells(analysed)
        if posterior:
            lines += ["Mean positive posterior of the backbone's head:", ""]
            lines += _md_table(["method", *SHOT_COLUMNS], posterior)
    if missing["analysis"]:
        lines += [f"No feature analysis for: {', '.join(missing['analysis'])}.", ""]
    lines += ["## DLSA: flow filters", ""]
    comparison = _dlsa_cells(inputs)
    if comparison:
        lines += _md_table(_DLSA_HEADER, comparison)
    cells = _filter_cells(inputs)
    if cells:
        lines += _md_table(_FILTER_HEADER, cells)
    if missing["dlsa"]:
        lines += [f"The dlsa stage has no output for: {', '.join(missing['dlsa'])}.", ""]
    lines += ["## Ranking", "", *(f"- {sentence}" for sentence in ranking(inputs)), ""]
    return "\n".join(lines)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    aligns = ["---" if i < 2 else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(map(_md_text, header)) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(map(_md_text, row)) + " |" for row in rows]
    return [*lines, ""]


def _md_text(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# --- numbers ---------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float, or None for a missing, null or non-finite value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _nan(value: Any) -> float:
    number = _number(value)
    return math.nan if number is None else number


def _fmt(value: Any, digits: int = 3) -> str:
    number = _number(value)
    if number is None:
        return "\u2013"
    return f"{number:.{digits}f}"


def _diff(a: Any, b: Any) -> float | None:
    a, b = _number(a), _number(b)
    return None if a is None or b is None else a - b


def _dig(value: Any, path: Sequence[str]) -> Any:
    """value[path[0]][path[1]]..., None where a level is missing."""
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _view(item: ReportInput, view: str) -> Mapping[str, Any] | None:
    return _dig(item.analysis, ("views", view))


def _best_value(rows: Sequence[_Row], column: str) -> float | None:
    values = [v for v in (_number(row.metrics.get(column)) for row in rows) if v is not None]
    if not values:
        return None
    return min(values) if column in _LOWER_IS_BETTER else max(values)


def _best_row(rows: Sequence[_Row], column: str) -> _Row | None:
    best = _best_value(rows, column)
    if best is None:
        return None
    return next(row for row in rows if _number(row.metrics.get(column)) == best)
