"""Stage ``analyze@<method>``: the feature quality of a bank, for the report and `dvc plots`.

Runs `features.analysis.analyze_bank` (kNN purity, k-means, rho, head/tail probe, posterior)
and adds two pictures of the test split: a seeded t-SNE of a class-stratified sample, and the
confusion matrix of the bank's own logits with classes binned by training frequency (DLSA
Fig. 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from features.analysis import AnalysisConfig, analyze_bank
from features.bank import Bank
from features.kmeans import KmeansConfig
from features.knn import KnnConfig
from features.separability import SeparabilityConfig
from stages.errors import StageError
from stages.io import write_csv, write_json
from stages.layout import analyze_results, bank_path, require_file
from stages.params import Params
from stages.progress import log

QUERY_SPLIT = "test"
# t-SNE's perplexity must stay below the number of points; 30 is sklearn's default.
_MAX_PERPLEXITY = 30.0


def run(params: Params, method_name: str) -> Path:
    """Analyse ``banks/<method>.h5`` and write ``results/analyze/<method>/``.

    Files: ``analysis.json`` (everything `analyze_bank` reports), ``metrics.json`` (headline
    scalars for `dvc metrics show`), ``rho.csv`` (D_intra, D_inter, rho per view and shot
    group), ``clusters.csv`` (k-means cluster sizes and purity of the `features` view),
    ``tsne.csv`` (x, y, label, head/tail group) and ``confusion.json`` (row-normalised
    confusion of the bank's logits between frequency bins; null without logits). The same bank
    and params give the same bytes on CPU.

    Returns:
        The results folder.
    """
    params.method(method_name)
    path = require_file(bank_path(method_name), f"tailbank dump --method {method_name}")
    out = analyze_results(method_name)
    config = analysis_config(params)
    section = params.analyze
    with Bank.open(path) as bank:
        available = bank.size("train") - 1  # a train row is not its own neighbour
        if section.k > available:
            raise StageError(
                f"params.yaml: analyze.k is {section.k} but {path} has only {available} "
                f"neighbours per train row; set analyze.k to at most {available}"
            )
        report = analyze_bank(bank, config)
        counts = bank.meta.class_counts
        test_x, test_y = bank.features(QUERY_SPLIT), bank.labels(QUERY_SPLIT)
        logits = bank.logits(QUERY_SPLIT)
    is_tail = counts <= section.tail_max_count
    tsne = tsne_rows(test_x, test_y, is_tail, section.tsne_samples, params.seed)
    confusion = None
    if logits is not None:
        confusion = frequency_confusion(
            logits.argmax(axis=1), test_y, counts, section.confusion_bins
        )
    write_json(out / "analysis.json", rounded(report))
    write_json(out / "metrics.json", headline(report))
    write_json(out / "confusion.json", rounded(confusion))
    write_csv(
        out / "rho.csv", ("label", "view", "group", "rho", "d_intra", "d_inter"), rho_rows(report)
    )
    write_csv(
        out / "clusters.csv", ("rank", "size", "purity", "majority_is_tail"), cluster_rows(report)
    )
    write_csv(out / "tsne.csv", ("x", "y", "label", "group"), tsne)
    features = report["views"]["features"]
    log(
        f"analyze {method_name}: test kNN purity {_fmt(features['knn']['query']['purity'])}, "
        f"rho {_fmt(features['representation']['overall']['rho'])}, head/tail probe "
        f"{_fmt(features['separability']['balanced_accuracy'])}"
    )
    return out


def analysis_config(params: Params) -> AnalysisConfig:
    """The analysis library's settings from the ``analyze``, ``eval`` and ``seed`` params."""
    section, seed = params.analyze, params.seed
    return AnalysisConfig(
        knn=KnnConfig(
            k=section.k,
            chunk_rows=section.chunk_rows,
            ivf_above=section.ivf_above,
            nprobe=section.nprobe,
            use_gpu=section.use_gpu,
            seed=seed,
        ),
        kmeans=KmeansConfig(
            n_clusters=section.kmeans_clusters,
            niter=section.kmeans_niter,
            max_train_rows=section.kmeans_max_rows,
            seed=seed,
        ),
        separability=SeparabilityConfig(max_rows_per_group=section.probe_max_rows, seed=seed),
        many_above=params.eval.many_above,
        few_below=params.eval.few_below,
        tail_max_count=section.tail_max_count,
        query_split=QUERY_SPLIT,
    )


def stratified_rows(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted rows of a seeded sample with about the same number of rows from every class.

    Each class gives the same quota of rows (all of its rows when it has fewer), the smallest
    quota that reaches ``size``, so a tail class is as visible as a head class; the draw is
    trimmed to ``size`` by a seeded shuffle.

    Args:
        labels: int [N], each row's class.
        size: Rows wanted.
        seed: Seed of the draw.

    Returns:
        int64 [min(size, N)], distinct row indices, ascending.
    """
    labels = np.asarray(labels, np.int64)
    if size >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    sizes = np.array([len(rows) for rows in members])
    # the smallest per-class quota that reaches `size` once small classes give all they have
    quota = math.ceil(size / len(members))
    while np.minimum(sizes, quota).sum() < size:
        quota += 1
    picked = np.concatenate([rng.permutation(rows)[:quota] for rows in members])
    chosen = rng.permutation(picked)[:size]
    return np.sort(chosen).astype(np.int64)


def tsne_rows(
    x: np.ndarray, y: np.ndarray, is_tail: np.ndarray, samples: int, seed: int
) -> list[tuple[float, float, int, str]]:
    """2-d t-SNE (PCA init, seeded) of a class-stratified sample of rows.

    Args:
        x: float [N, D], features.
        y: int [N], labels.
        is_tail: bool [C], tail flag of each class.
        samples: Rows to embed; 0 = none.
        seed: Seed of the sample and of t-SNE.

    Returns:
        (x, y, label, "head" | "tail") per sampled row; empty when fewer than 3 rows.
    """
    rows = stratified_rows(y, samples, seed)
    if len(rows) < 3:
        return []
    points = np.asarray(x[rows], np.float64)
    perplexity = min(_MAX_PERPLEXITY, (len(rows) - 1) / 3)
    # One thread: the Barnes-Hut sums then run in a fixed order (same bytes every run), and
    # OpenMP threads fighting over shared cores made 400 points take 45 s instead of 1.5 s.
    with threadpool_limits(limits=1):
        embedding = TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=perplexity, n_jobs=1
        ).fit_transform(points)
    labels = np.asarray(y)[rows]
    return [
        (float(a), float(b), int(label), "tail" if is_tail[label] else "head")
        for (a, b), label in zip(embedding, labels, strict=True)
    ]


def frequency_confusion(
    predicted: np.ndarray, labels: np.ndarray, class_counts: np.ndarray, bins: int
) -> dict[str, Any]:
    """Confusion between bins of classes sorted by training frequency (DLSA Fig. 1).

    Classes are sorted by count, most frequent first (ties by class index), and cut into
    ``min(bins, C)`` consecutive bins of nearly equal numbers of classes. Entry [a, b] is the
    share of test rows of bin a's classes predicted as a class of bin b, so each row sums to 1
    (0 for a bin without test rows); mass right of the diagonal is head bias.

    Args:
        predicted: int [N], predicted classes.
        labels: int [N], true classes.
        class_counts: int [C], training rows per class.
        bins: Wanted number of bins.

    Returns:
        {"matrix": [B][B] floats, "bins": [{"classes", "min_count", "max_count", "rows"}]}.
    """
    counts = np.asarray(class_counts)
    if bins < 1:
        raise StageError(f"analyze.confusion_bins must be >= 1, got {bins}")
    order = np.argsort(-counts, kind="stable")
    groups = np.array_split(order, min(bins, len(counts)))
    bin_of = np.empty(len(counts), np.int64)
    for index, members in enumerate(groups):
        bin_of[members] = index
    size = len(groups)
    table = np.zeros((size, size))
    np.add.at(table, (bin_of[np.asarray(labels)], bin_of[np.asarray(predicted)]), 1.0)
    totals = table.sum(axis=1, keepdims=True)
    matrix = np.divide(table, totals, out=np.zeros_like(table), where=totals > 0)
    described = [
        {
            "classes": [int(c) for c in members],
            "min_count": int(counts[members].min()),
            "max_count": int(counts[members].max()),
            "rows": int(totals[index, 0]),
        }
        for index, members in enumerate(groups)
    ]
    return {"matrix": matrix.tolist(), "bins": described}


def headline(report: dict[str, Any]) -> dict[str, float | None]:
    """A few scalars of the `features` view for `dvc metrics show`."""
    view = report["views"]["features"]
    purity = view["knn"]["query"]["purity"]
    values = {
        "knn_purity": purity["overall"],
        "knn_purity_few": purity["few"],
        "knn_accuracy": view["knn"]["query"]["accuracy"]["overall"],
        "rho": view["representation"]["overall"]["rho"],
        "head_tail_balanced_accuracy": view["separability"]["balanced_accuracy"],
        "kmeans_purity": view["kmeans"]["purity"],
        "mean_positive_posterior": (report["posterior"] or {}).get("overall"),
    }
    return rounded(values)


def rho_rows(report: dict[str, Any]) -> list[tuple[str, str, str, Any, Any, Any]]:
    """(label, view, group, rho, D_intra, D_inter) per view and group; "" where undefined."""
    rows = []
    for view, section in report["views"].items():
        for group, terms in section["representation"].items():
            rows.append(
                (
                    f"{view} {group}",
                    view,
                    group,
                    *(_cell(terms[key]) for key in ("rho", "d_intra", "d_inter")),
                )
            )
    return rows


def cluster_rows(report: dict[str, Any]) -> list[tuple[int, int, Any, Any]]:
    """(rank, size, purity, majority is tail) of the `features` view's clusters, largest first."""
    clusters = report["views"]["features"]["kmeans"]["clusters"]
    ordered = sorted(clusters, key=lambda cluster: -cluster["size"])
    return [
        (
            rank + 1,
            cluster["size"],
            _cell(cluster["purity"]),
            "" if cluster["majority_is_tail"] is None else int(cluster["majority_is_tail"]),
        )
        for rank, cluster in enumerate(ordered)
    ]


def rounded(value: Any) -> Any:
    """A copy with floats rounded to 6 decimals (stable, readable JSON); NaN becomes null."""
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(item) for item in value]
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


def _cell(value: float | None) -> float | str:
    return "" if value is None else float(value)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("overall")
    return "n/a" if value is None else f"{value:.4f}"
