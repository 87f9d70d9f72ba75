"""Feature-quality analysis of a bank: how well a backbone's features separate head from tail.

For every view of the bank (`features` and each `extra/<name>`), `analyze_bank` reports

- kNN purity and kNN-classifier accuracy (cosine, faiss; `features.analysis.knn`) of the
  query split (test) against the index split (train), and of the index split against itself;
- spherical k-means on the index split: cluster purity, sizes, and whether each cluster's
  majority label is a head or a tail class;
- the representation statistics of the MBIB paper (Eq. 15-17): D_intra, D_inter, rho, on the
  query split;
- head/tail linear separability: a class-balanced logistic probe, head vs tail;

and, from the bank's own logits, the mean positive posterior of each class (MBIB Eq. 14).
Everything is also given per shot group (many / medium / few, `features.metrics.shot_groups`).
Tail, for the probe and the k-means flags, means at most `tail_max_count` training images
(50, the tail of DLSA); head is every other class.

The result is an `AnalysisResult` (`features.analysis.result`); its `to_json()` is
`analysis.json`. The index split is streamed in `KnnConfig.chunk_rows` blocks (`BankRows`);
the query split is held in memory when it fits the budget (`load_rows`).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from core.progress import Progress, tell
from features.analysis.groups import class_group_means, class_means
from features.analysis.kmeans import kmeans_rows
from features.analysis.knn import knn_bank, use_gpu
from features.analysis.records import json_value
from features.analysis.representation import POSTERIOR_ROWS, posterior_of_rows, representation_stats
from features.analysis.result import (
    AnalysisResult,
    GroupMeans,
    KmeansSummary,
    KnnSummary,
    PerClass,
    Representation,
    ViewPerClass,
    ViewResult,
)
from features.analysis.separability import separability_rows
from features.bank import Bank
from features.bank.rows import BankRows, load_rows
from features.configs import AnalysisConfig
from features.errors import FeaturesError
from features.metrics import shot_groups


def analyze_bank(
    bank: Bank,
    config: AnalysisConfig | None = None,
    budget_bytes: int | None = None,
    progress: Progress | None = None,
) -> AnalysisResult:
    """Every analysis of this module on every view of a bank.

    Args:
        bank: An open bank with the index and query splits.
        config: Settings; None = defaults.
        budget_bytes: Bytes of query rows held at once; a larger query split is read from
            the bank on demand, with the same result (None: no limit). The index split is
            always read in `config.knn.chunk_rows` blocks.
        progress: Told ``(step, done, total)`` after each step: the posterior, then kNN,
            k-means, representation and probe of each view ("features knn").

    Returns:
        The settings, per-class values (class counts, shot groups, tail flags, mean positive
        posterior), the posterior per shot group, and one `ViewResult` per analysed view with
        kNN (query against index, and index against itself), k-means, representation
        statistics, separability and per-class kNN purity / accuracy / D_intra / D_inter.
        The same bank and config give the same result; `to_json()` is `analysis.json`.
    """
    config = config or AnalysisConfig()
    for split in (config.index_split, config.query_split):
        if split not in bank.splits:
            raise FeaturesError(
                f"{bank.path}: no split {split!r} to analyse (it has {bank.splits}); "
                "re-dump the bank with it or set AnalysisConfig.index_split/query_split"
            )
    counts = bank.meta.class_counts
    groups = (config.many_above, config.few_below)
    views = _views(bank, config)
    steps = _Steps(progress, 1 + len(_VIEW_STEPS) * len(views))
    posterior = _posterior(bank, config)
    steps.done("posterior")
    return AnalysisResult(
        method=bank.meta.method,
        backbone=bank.meta.backbone,
        dataset=bank.meta.dataset,
        config=json_value(asdict(config)),
        per_class=PerClass(
            class_counts=_json_tuple(counts),
            shot_group=_json_tuple(shot_groups(counts, *groups)),
            is_tail=_json_tuple(counts <= config.tail_max_count),
            mean_positive_posterior=None if posterior is None else _json_tuple(posterior),
        ),
        posterior=(
            None if posterior is None
            else GroupMeans(**json_value(class_group_means(posterior, counts, *groups)))
        ),
        views={view: _analyze_view(bank, view, config, budget_bytes, steps) for view in views},
    )


# the steps of one view, in the order `_analyze_view` runs them
_VIEW_STEPS = ("knn", "kmeans", "representation", "probe")


class _Steps:
    """Counts the finished steps of one analysis and tells ``progress``."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress, self._total, self._done = progress, total, 0

    def done(self, step: str) -> None:
        self._done += 1
        tell(self._progress, step, self._done, self._total)


def _views(bank: Bank, config: AnalysisConfig) -> tuple[str, ...]:
    shared = set(bank.extra_names(config.index_split)) & set(bank.extra_names(config.query_split))
    available = ("features", *(f"extra/{name}" for name in sorted(shared)))
    if config.views is None:
        return available
    missing = [view for view in config.views if view not in available]
    if missing:
        raise FeaturesError(
            f"{bank.path}: views {missing} are not in both {config.index_split!r} and "
            f"{config.query_split!r}; choose from {list(available)}"
        )
    return tuple(config.views)


def _posterior(bank: Bank, config: AnalysisConfig) -> np.ndarray | None:
    """float64 [C] mean positive posterior of the query split (MBIB Eq. 14); None without
    logits."""
    if not bank.has(config.query_split, "logits"):
        return None
    logits = BankRows(bank, config.query_split, "logits", window_rows=POSTERIOR_ROWS)
    return posterior_of_rows(logits, bank.labels(config.query_split), bank.meta.num_classes)


def _analyze_view(
    bank: Bank, view: str, config: AnalysisConfig, budget_bytes: int | None, steps: _Steps
) -> ViewResult:
    """kNN, k-means, representation statistics and the probe of one view of the bank."""
    index_split, query_split = config.index_split, config.query_split
    counts = bank.meta.class_counts
    groups = {"many_above": config.many_above, "few_below": config.few_below}
    index_y, query_y = bank.labels(index_split), bank.labels(query_split)
    query_x = load_rows(bank, [(query_split, view)], budget_bytes)[query_split, view]
    # the index split is streamed, never held: its blocks are those the kNN index is built from
    index_x = BankRows(bank, index_split, view, window_rows=config.knn.chunk_rows)
    # one index of the train rows answers both the test queries and the train rows' own
    knn = knn_bank(
        bank, config.knn, index_split=index_split, query_splits=(query_split, index_split),
        field=view,
    )
    knn_query, knn_self = knn[query_split], knn[index_split]
    steps.done(f"{view} knn")
    clusters = kmeans_rows(
        index_x,
        index_y,
        counts,
        config.kmeans,
        tail_max_count=config.tail_max_count,
        chunk_rows=config.knn.chunk_rows,
        use_gpu=use_gpu(config.knn),
        **groups,
    )
    steps.done(f"{view} kmeans")
    representation = representation_stats(query_x, query_y, counts, **groups)
    steps.done(f"{view} representation")
    separability = separability_rows(
        index_x,
        index_y,
        query_x,
        query_y,
        counts,
        config.separability,
        tail_max_count=config.tail_max_count,
    )
    steps.done(f"{view} probe")
    num_classes = len(counts)
    return ViewResult(
        dim=query_x.dim,
        knn=KnnSummary(
            index_kind=knn_query.index_kind,
            query=knn_query.scores(counts, **groups),
            itself=knn_self.scores(counts, **groups),
            ivf=knn_query.ivf,
        ),
        kmeans=KmeansSummary.from_json(json_value(clusters.summary())),
        representation=Representation.from_json(json_value(representation.summary())),
        separability=separability,
        per_class=ViewPerClass(
            knn_purity=_json_tuple(class_means(knn_query.purity, query_y, num_classes)),
            knn_accuracy=_json_tuple(class_means(knn_query.correct, query_y, num_classes)),
            knn_purity_self=_json_tuple(class_means(knn_self.purity, index_y, num_classes)),
            d_intra=_json_tuple(representation.intra),
            d_inter=_json_tuple(representation.inter),
        ),
    )


def _json_tuple(values: np.ndarray) -> tuple:
    """The JSON values of an array [C] (NaN as None), as a tuple."""
    return tuple(json_value(values))
