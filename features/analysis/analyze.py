"""Feature-quality analysis of a bank: how well a backbone's features separate head from tail.

For every view of the bank (`features` and each `extra/<name>`), `analyze_bank` reports

- kNN purity and kNN-classifier accuracy (cosine, faiss; `features.analysis.knn`) of the query split
  (test) against the index split (train), and of the index split against itself;
- spherical k-means on the index split: cluster purity, sizes, and whether each cluster's
  majority label is a head or a tail class;
- the representation statistics of the MBIB paper (Eq. 15-17): D_intra, D_inter, rho, on the
  query split;
- head/tail linear separability: a class-balanced logistic probe, head vs tail;

and, from the bank's own logits, the mean positive posterior of each class (MBIB Eq. 14).
Everything is also given per shot group (many / medium / few, `features.metrics.shot_groups`).
Tail, for the probe and the k-means flags, means at most `tail_max_count` training images
(50, the tail of DLSA); head is every other class.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from features.analysis.kmeans import kmeans_chunks
from features.analysis.knn import bank_chunks, class_means, knn_bank_queries, use_gpu
from features.analysis.representation import (
    POSTERIOR_ROWS,
    class_group_means,
    posterior_from_chunks,
    representation_stats,
)
from features.analysis.separability import separability_chunks
from features.bank import Bank
from features.bank.rows import load_rows
from features.configs import AnalysisConfig, KmeansConfig, KnnConfig, SeparabilityConfig
from features.errors import FeaturesError
from features.metrics import shot_groups

__all__ = ["AnalysisConfig", "KmeansConfig", "KnnConfig", "SeparabilityConfig", "analyze_bank"]


def analyze_bank(
    bank: Bank, config: AnalysisConfig | None = None, budget_bytes: int | None = None
) -> dict[str, Any]:
    """Every analysis of this module on every view of a bank, as a JSON-ready dict.

    Args:
        bank: An open bank with the index and query splits.
        config: Settings; None = defaults.
        budget_bytes: Bytes of query rows held at once; a larger query split is read from
            the bank on demand, with the same result (None: no limit). The index split is
            always read in `config.knn.chunk_rows` blocks.

    Returns:
        Nested dict of plain Python values (NaN as None): the settings, per-class arrays
        (class counts, shot groups, tail flags, mean positive posterior), the posterior per
        shot group, and under "views" one entry per analysed view with kNN (query against
        index, and index against itself), k-means, representation statistics, separability
        and per-class kNN purity / accuracy / D_intra / D_inter. The same bank and config give
        the same dict.
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
    posterior = _posterior(bank, config)
    report = {
        "method": bank.meta.method,
        "backbone": bank.meta.backbone,
        "dataset": bank.meta.dataset,
        "config": asdict(config),
        "per_class": {
            "class_counts": counts,
            "shot_group": shot_groups(counts, *groups),
            "is_tail": counts <= config.tail_max_count,
            "mean_positive_posterior": posterior,
        },
        "posterior": None if posterior is None else class_group_means(posterior, counts, *groups),
        "views": {view: _analyze_view(bank, view, config, budget_bytes)
                  for view in _views(bank, config)},
    }
    return _jsonable(report)


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
    if not bank.has(config.query_split, "logits"):
        return None
    blocks = bank_chunks(bank, config.query_split, "logits", POSTERIOR_ROWS)
    return posterior_from_chunks(blocks, bank.labels(config.query_split), bank.meta.num_classes)


def _analyze_view(
    bank: Bank, view: str, config: AnalysisConfig, budget_bytes: int | None
) -> dict[str, Any]:
    index_split, query_split = config.index_split, config.query_split
    counts = bank.meta.class_counts
    groups = {"many_above": config.many_above, "few_below": config.few_below}
    index_y, query_y = bank.labels(index_split), bank.labels(query_split)
    query_x = load_rows(bank, [(query_split, view)], budget_bytes)[query_split, view]
    index_chunks = bank_chunks(bank, index_split, view, config.knn.chunk_rows)
    # one index of the train rows answers both the test queries and the train rows' own
    knn = knn_bank_queries(
        bank, config.knn, index_split=index_split, query_splits=(query_split, index_split),
        field=view,
    )
    knn_query, knn_self = knn[query_split], knn[index_split]
    clusters = kmeans_chunks(
        index_chunks,
        index_y,
        counts,
        config.kmeans,
        tail_max_count=config.tail_max_count,
        use_gpu=use_gpu(config.knn),
        **groups,
    )
    representation = representation_stats(query_x, query_y, counts, **groups)
    separability = separability_chunks(
        index_chunks,
        index_y,
        query_x,
        query_y,
        counts,
        config.separability,
        tail_max_count=config.tail_max_count,
    )
    num_classes = len(counts)
    return {
        "dim": query_x.dim,
        "knn": {
            "index": knn_query.index_kind,
            "query": knn_query.summary(counts, **groups),
            "self": knn_self.summary(counts, **groups),
        },
        "kmeans": clusters.summary(),
        "representation": representation.summary(),
        "separability": separability.summary(),
        "per_class": {
            "knn_purity": class_means(knn_query.purity, query_y, num_classes),
            "knn_accuracy": class_means(knn_query.correct, query_y, num_classes),
            "knn_purity_self": class_means(knn_self.purity, index_y, num_classes),
            "d_intra": representation.intra,
            "d_inter": representation.inter,
        },
    }


def _jsonable(value: Any) -> Any:
    """Plain Python values for json.dump: arrays to lists, numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if value is None:
        return None
    raise TypeError(f"cannot make {type(value).__name__} JSON-ready")
