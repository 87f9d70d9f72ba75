"""The report's matplotlib figures, each rendered to PNG bytes (None when it has no data).

Drawn on matplotlib's Agg canvas through `Figure` (no pyplot, no global state). Figure sizes,
dpi and style are fixed and the PNGs carry no software or time stamp, so the same input gives
the same bytes. Draw inside `plot_style()` so every figure gets the report's fonts and grid.
"""

from __future__ import annotations

import io
import math
from contextlib import AbstractContextManager

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from features.report.inputs import (
    SHOT_COLUMNS,
    ReportInput,
    ReportSettings,
    analysis_view,
    dig,
    nan_if_missing,
    number,
)
from features.report.text import chosen_classifier

_DPI = 100
_HEAD, _TAIL = "#1f77b4", "#ff7f0e"
_GROUP_COLOURS = {"overall": "#4d4d4d", "many": "#1f77b4", "medium": "#2ca02c", "few": "#d62728"}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
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


def plot_style() -> AbstractContextManager[None]:
    """The report's matplotlib rc settings, for a `with` block around the plot calls."""
    return matplotlib.rc_context(_STYLE)


def shot_group_plot(inputs: list[ReportInput]) -> bytes | None:
    """Bars of test accuracy per shot group, one cluster per method (its val-chosen classifier)."""
    chosen = [(item, chosen_classifier(item)) for item in inputs]
    chosen = [(item, kind) for item, kind in chosen if kind is not None]
    if not chosen:
        return None
    figure = _figure(max(6.0, 1.0 * len(chosen) + 2.0), 3.4)
    axes = figure.add_subplot()
    values = [
        [nan_if_missing(item.classify[kind].get(group)) for group in SHOT_COLUMNS]
        for item, kind in chosen
    ]
    _shot_group_bars(axes, [f"{item.method}\n{kind}" for item, kind in chosen], values)
    # zoomed to the data (in steps of 0.1): accuracies near 1 would all look alike from 0
    shown = [number(item.classify[kind].get(g)) for item, kind in chosen for g in SHOT_COLUMNS]
    low = min((value for value in shown if value is not None), default=0.0)
    axes.set_ylim(max(0.0, math.floor((low - 0.05) * 10) / 10), 1.02)
    axes.set_ylabel("test accuracy (axis starts above 0)" if low > 0.15 else "test accuracy")
    axes.set_title("Test accuracy per shot group (classifier chosen on val)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def _shot_group_bars(axes: Axes, labels: list[str], values: list[list[float]]) -> None:
    """One cluster of bars per label, one bar per shot group (`values[i][g]`, NaN = none)."""
    width = 0.8 / len(SHOT_COLUMNS)
    positions = np.arange(len(labels))
    for offset, group in enumerate(SHOT_COLUMNS):
        axes.bar(
            positions + (offset - 1.5) * width,
            [row[offset] for row in values],
            width,
            label=group,
            color=_GROUP_COLOURS[group],
        )
    axes.set_xticks(positions, labels, fontsize=8)


def per_class_plot(inputs: list[ReportInput], settings: ReportSettings) -> bytes | None:
    """Per-class test accuracy against training count (log x), shot-group bounds dashed."""
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
            [nan_if_missing(row["accuracy"]) for row in rows],
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


def confusion_plot(inputs: list[ReportInput]) -> bytes | None:
    """One heat map per method of its confusion between frequency bins (DLSA Fig. 1)."""
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


def rho_plot(analysed: list[ReportInput]) -> bytes | None:
    """Bars of \u03c1 = D_intra / D_inter per shot group of the `features` view, per method."""
    values = {item.method: _feature_rhos(item) for item in analysed}
    if all(np.isnan(v).all() for v in values.values()):
        return None
    figure = _figure(max(6.0, 0.9 * len(values) + 2.0), 3.2)
    axes = figure.add_subplot()
    _shot_group_bars(axes, list(values), list(values.values()))
    axes.set_ylabel("\u03c1 = D_intra / D_inter")
    axes.set_title("\u03c1 per shot group (features, test; lower is better)")
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _png(figure)


def _feature_rhos(item: ReportInput) -> list[float]:
    """rho of the `features` view per shot column; NaN where missing."""
    view = analysis_view(item, "features")
    return [
        nan_if_missing(None if view is None else view.representation.of(g).rho)
        for g in SHOT_COLUMNS
    ]


def cluster_plot(analysed: list[ReportInput]) -> bytes | None:
    """k-means cluster sizes (log y) and purities, largest cluster first, per method."""
    series = []
    for item in analysed:
        view = analysis_view(item, "features")
        clusters = None if view is None else view.kmeans.clusters
        if clusters:
            ordered = sorted(clusters, key=lambda cluster: -int(cluster.size))
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
            [max(int(c.size), 1) for c in clusters],
            marker=".",
            color=colour,
            label=method,
            linewidth=0.9,
        )
        purity_axes.plot(
            ranks,
            [nan_if_missing(c.purity) for c in clusters],
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


def tsne_plot(inputs: list[ReportInput]) -> bytes | None:
    """One t-SNE scatter per method, head and tail classes in two colours."""
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


def separation_plot(inputs: list[ReportInput]) -> bytes | None:
    """DLSA separation accuracy per filter against chance (DLSA Fig. 7), per method."""
    series = [(item.method, item.dlsa_filters) for item in inputs if item.dlsa_filters]
    if not series:
        return None
    figure = _figure(8.0, 3.4)
    axes = figure.add_subplot()
    for index, (method, filters) in enumerate(series):
        steps = [int(entry.get("index", i)) + 1 for i, entry in enumerate(filters)]
        accuracy = [
            nan_if_missing(dig(entry, ("separation_accuracy", "test"))) for entry in filters
        ]
        chance = [nan_if_missing(dig(entry, ("tail_share_seen", "test"))) for entry in filters]
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


def _colour(index: int) -> str:
    """The tab10 colour of the index-th series (cycling)."""
    return matplotlib.colormaps["tab10"](index % 10)


def _figure(width: float, height: float) -> Figure:
    """A figure of the report's dpi with constrained layout (width, height in inches)."""
    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _png(figure: Figure) -> bytes:
    """PNG bytes without software or time metadata (same figure, same bytes)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()
