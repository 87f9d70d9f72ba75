"""Stage ``analyze@<method>``: the feature quality of a bank, for the report and `dvc plots`.

Runs `features.analysis.analyze.analyze_bank` (kNN purity, k-means, rho, head/tail probe, posterior)
and adds two pictures of the test split: a seeded t-SNE of a class-stratified sample, and the
confusion matrix of the bank's own logits with classes binned by training frequency (DLSA
Fig. 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from features.analysis import AnalysisResult
from features.analysis.analyze import analyze_bank
from features.analysis.tsne import tsne_rows
from features.bank import Bank
from features.bank.rows import load_rows
from features.metrics import frequency_confusion
from stages.configs import QUERY_SPLIT, analysis_config
from stages.errors import StageError
from stages.io import json_ready, write_csv, write_json
from stages.layout import analyze_results, check_bank_origin, require_stage2_bank
from stages.outputs import StageOutputs
from stages.params import Params
from stages.progress import StepProgress, log

# t-SNE's perplexity must stay below the number of points; 30 is sklearn's default.


def run(params: Params, method_name: str, seed: int) -> Path:
    """Analyse ``banks/<method>/seed<seed>.h5`` and write ``results/analyze/<method>/seed<seed>/``.

    Files: ``analysis.json`` (everything `analyze_bank` reports), ``metrics.json`` (headline
    scalars; an output, not one of dvc.yaml's `metrics:`), ``rho.csv`` (D_intra, D_inter, rho
    per view and shot group), ``clusters.csv`` (k-means cluster sizes and purity of the
    `features` view), ``tsne.csv`` (x, y, label, head/tail group) and ``confusion.json``
    (row-normalised confusion of the bank's logits between frequency bins; null without
    logits). The same bank and params give the same bytes on CPU.

    Returns:
        The results folder.
    """
    path = require_stage2_bank(params, method_name, seed)
    config = analysis_config(params, seed)
    section = params.analyze
    results = analyze_results(method_name, seed)
    with StageOutputs(folders=[results]) as outputs, Bank.open(path) as bank:
        check_bank_origin(params, method_name, bank.meta.source_kind)
        out = outputs.staged(results)
        available = bank.size("train") - 1  # a train row is not its own neighbour
        if section.k > available:
            raise StageError(
                f"params.yaml: analyze.k is {section.k} but {path} has only {available} "
                f"neighbours per train row; set analyze.k to at most {available}"
            )
        budget = params.memory.budget_bytes
        with StepProgress(f"analyze {method_name}", 1, "steps") as progress:
            report = analyze_bank(bank, config, budget, progress.report)
        counts = bank.meta.class_counts
        test_y = bank.labels(QUERY_SPLIT)
        test_x = load_rows(bank, [(QUERY_SPLIT, "features")], budget)[QUERY_SPLIT, "features"]
        is_tail = counts <= section.tail_max_count
        tsne = tsne_rows(test_x, test_y, is_tail, section.tsne_samples, seed)
        confusion = None
        if bank.has(QUERY_SPLIT, "logits"):
            predicted = np.concatenate([block.argmax(axis=1) for block in
                                        bank.iter_chunks(QUERY_SPLIT, "logits")])
            confusion = frequency_confusion(predicted, test_y, counts, section.confusion_bins)
        write_json(out / "analysis.json", json_ready(report.to_json()))
        write_json(out / "metrics.json", headline(report))
        write_json(out / "confusion.json", json_ready(confusion))
        write_csv(out / "rho.csv", ("label", "view", "group", "rho", "d_intra", "d_inter"),
                  rho_rows(report))
        write_csv(out / "clusters.csv", ("rank", "size", "purity", "majority_is_tail"),
                  cluster_rows(report))
        write_csv(out / "tsne.csv", ("x", "y", "label", "group"), tsne)
    features = report.views["features"]
    log(
        f"analyze {method_name} seed {seed}: test kNN purity "
        f"{_fmt(features.knn.query.purity.overall)}, "
        f"rho {_fmt(features.representation.overall.rho)}, head/tail probe "
        f"{_fmt(features.separability.balanced_accuracy)}"
    )
    return results


def headline(report: AnalysisResult) -> dict[str, float | None]:
    """A few scalars of the `features` view (``metrics.json``, read by people and scripts)."""
    view = report.views["features"]
    purity = view.knn.query.purity
    values = {
        "knn_purity": purity.overall,
        "knn_purity_few": purity.few,
        "knn_accuracy": view.knn.query.accuracy.overall,
        "rho": view.representation.overall.rho,
        "head_tail_balanced_accuracy": view.separability.balanced_accuracy,
        "kmeans_purity": view.kmeans.purity,
        "mean_positive_posterior": None if report.posterior is None else report.posterior.overall,
    }
    return json_ready(values)


def rho_rows(report: AnalysisResult) -> list[tuple[str, str, str, Any, Any, Any]]:
    """(label, view, group, rho, D_intra, D_inter) per view and group; "" where undefined."""
    rows = []
    for view, section in report.views.items():
        for group, terms in section.representation.items():
            rows.append(
                (
                    f"{view} {group}",
                    view,
                    group,
                    *(_cell(value) for value in (terms.rho, terms.d_intra, terms.d_inter)),
                )
            )
    return rows


def cluster_rows(report: AnalysisResult) -> list[tuple[int, int, Any, Any]]:
    """(rank, size, purity, majority is tail) of the `features` view's clusters, largest first."""
    clusters = report.views["features"].kmeans.clusters
    ordered = sorted(clusters, key=lambda cluster: -cluster.size)
    return [
        (
            rank + 1,
            cluster.size,
            _cell(cluster.purity),
            "" if cluster.majority_is_tail is None else int(cluster.majority_is_tail),
        )
        for rank, cluster in enumerate(ordered)
    ]


def _cell(value: float | None) -> float | str:
    return "" if value is None else float(value)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("overall")
    return "n/a" if value is None else f"{value:.4f}"
