"""k-nearest-neighbour purity and accuracy of a bank's rows on cosine similarity (faiss).

Rows are L2-normalised, so the inner product that the faiss index ranks by is the cosine
similarity. The index rows are added block by block and the queries are searched block by
block (`FeatureRows.numpy_blocks`), so neither split has to be one array in memory; faiss
holds the index itself. Arrays (`knn_arrays`) and banks (`knn_bank`) are both `FeatureRows`
and take the same code, so both give the same numbers.

Index: exact `IndexFlatIP` up to `KnnConfig.ivf_above` index rows, `IndexIVFFlat` above it
(about sqrt(N) inverted lists, trained on a seeded sample), searched on the CPU list by list
with matrix products (`ivf_scan`). How many lists an IVF search
visits is not a guess: starting from `nprobe`, it doubles until the recall@k against the
exact search, measured on a seeded sample of the queries (visiting every list is exact), is
at least `min_recall`; the result records the nprobe and the recall. On the GPU when faiss
sees one and `use_gpu` allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

from features.analysis import ivf_scan
from features.analysis.cosine import normalized_rows
from features.analysis.groups import group_means
from features.analysis.result import GroupMeans, IvfSearch, KnnScores
from features.analysis.sample import seeded_rows
from features.bank import Bank
from features.bank.rows import ArrayRows, BankRows, FeatureRows
from features.configs import KnnConfig
from features.errors import ConfigError, FeaturesError

# Rows of the IVF training sample per inverted list (faiss warns below 39) and k-means
# iterations of the coarse quantiser (faiss: 25). A rougher quantiser only costs lists
# visited, and the recall check raises nprobe until the recall target holds, so training is
# kept cheap: at 200k rows it was most of the IVF path's time.
_IVF_TRAIN_PER_LIST = 40
_IVF_KMEANS_ITERATIONS = 10


def use_gpu(config: KnnConfig) -> bool:
    """Whether to put indexes on the GPU: `config.use_gpu` against the GPUs faiss sees.

    Raises:
        FeaturesError: ``use_gpu`` is True but faiss sees no GPU.
    """
    visible = faiss.get_num_gpus() > 0
    if config.use_gpu is True and not visible:
        raise ConfigError("KnnConfig", "use_gpu", "asks for a GPU but faiss sees none; install "
                          "faiss-gpu (pip extra `gpu`) or use auto or false", True)
    return visible and config.use_gpu is not False


@dataclass
class KnnResult:
    """Outcome of a kNN search, one entry per query row.

    Attributes:
        labels: int64 [N], the queries' classes.
        neighbors: int64 [N, k], train rows of the k nearest neighbours, nearest first;
            -1 where an IVF search found fewer than k.
        purity: float64 [N], share of the found neighbours with the query's label
            (NaN when none was found).
        prediction: int64 [N], the neighbours' majority label (-1 when none was found).
        index_kind: "flat" or "ivf".
        ivf: for an IVF index, the nprobe searched with and the recall@k it measured.
    """

    labels: np.ndarray
    neighbors: np.ndarray
    purity: np.ndarray
    prediction: np.ndarray
    index_kind: str
    ivf: IvfSearch | None = None

    @property
    def correct(self) -> np.ndarray:
        """float64 [N], 1 where the kNN classifier's vote is the query's label, else 0."""
        return (self.prediction == self.labels).astype(np.float64)

    def scores(
        self, class_counts: np.ndarray, many_above: int = 100, few_below: int = 20
    ) -> KnnScores:
        """Mean purity and accuracy over all queries and per shot group (None when empty)."""
        groups = (class_counts, many_above, few_below)
        return KnnScores(
            purity=GroupMeans(**group_means(self.purity, self.labels, *groups)),
            accuracy=GroupMeans(**group_means(self.correct, self.labels, *groups)),
        )


@dataclass(frozen=True)
class _Queries:
    """One set of query rows searched in a built index.

    Attributes:
        rows: float32 [M, D] query rows.
        labels: int64 [M], their classes.
        exclude_self: Query i is index row i and is not its own neighbour.
    """

    rows: FeatureRows
    labels: np.ndarray
    exclude_self: bool


def knn_arrays(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    config: KnnConfig,
    *,
    exclude_self: bool,
) -> KnnResult:
    """kNN search of in-memory rows (held as float32, like a bank's).

    Args:
        train_x: float [N, D], the indexed rows.
        train_y: int [N], their labels.
        query_x: float [M, D]; with `exclude_self`, the train rows themselves (M = N).
        query_y: int [M].
        config: Index and search settings.
        exclude_self: Query i is train row i and is not its own neighbour.

    Returns:
        Neighbours, purity and votes of every query.
    """
    train_x = _float_rows(train_x, "train_x")
    query_x = _float_rows(query_x, "query_x", train_x.shape[1])
    train_y = _labels(train_y, "train_y", len(train_x))
    query_y = _labels(query_y, "query_y", len(query_x))
    if exclude_self and len(query_x) != len(train_x):
        raise FeaturesError(
            f"exclude_self needs the train rows as queries, but there are {len(query_x)} "
            f"queries for {len(train_x)} train rows; pass exclude_self=False"
        )
    queries = {"query": _Queries(ArrayRows(query_x, "query_x"), query_y, exclude_self)}
    return _knn(ArrayRows(train_x, "train_x"), train_y, queries, config)["query"]


def knn_bank(
    bank: Bank,
    config: KnnConfig,
    *,
    index_split: str = "train",
    query_splits: tuple[str, ...] = ("test",),
    field: str = "features",
) -> dict[str, KnnResult]:
    """kNN search of splits of a bank against one index, built (and read) once.

    Rows are read in `config.chunk_rows` blocks. A query split equal to `index_split` leaves
    each row out of its own neighbours.

    Args:
        bank: An open bank.
        config: Index and search settings.
        index_split: Split whose rows are indexed.
        query_splits: Splits whose rows are searched.
        field: `features` or `extra/<name>`, the view of the rows.

    Returns:
        Query split -> neighbours, purity and votes of its rows.
    """

    def rows(split: str) -> BankRows:
        return BankRows(bank, split, field, window_rows=config.chunk_rows)

    queries = {
        split: _Queries(rows(split), bank.labels(split), split == index_split)
        for split in query_splits
    }
    return _knn(rows(index_split), bank.labels(index_split), queries, config)


def _knn(
    index_rows: FeatureRows,
    index_y: np.ndarray,
    queries: Mapping[str, _Queries],
    config: KnnConfig,
) -> dict[str, KnnResult]:
    """Builds one index of `index_rows` and searches each set of queries in it.

    Args:
        index_rows: float32 [N, D], the indexed rows.
        index_y: int64 [N], their labels.
        queries: Name -> query rows, their labels and whether they are the index rows.
        config: Index and search settings.

    Returns:
        Name -> neighbours, purity and votes of those queries.
    """
    for query in queries.values():
        config.check_k(len(index_y), query.exclude_self)
    first = next(iter(queries.values()))
    index, ivf, _resources = _build_index(index_rows, len(index_y), config, first)
    return {name: _search(index, ivf, index_y, query, config) for name, query in queries.items()}


def _search(
    index: faiss.Index, ivf: IvfSearch | None, index_y: np.ndarray, query: _Queries,
    config: KnnConfig,
) -> KnnResult:
    """Searches the query rows, block by block, in a built index."""
    wanted = config.k + 1 if query.exclude_self else config.k
    neighbors, purity, prediction = [], [], []
    start = 0
    for block in query.rows.numpy_blocks(config.chunk_rows):
        block = normalized_rows(block)
        sims, ids = _index_search(index, block, wanted)
        if query.exclude_self:
            sims, ids = _drop_self(sims, ids, np.arange(start, start + len(block)))
        labels = query.labels[start : start + len(block)]
        valid = ids >= 0
        neighbor_labels = np.where(valid, index_y[np.maximum(ids, 0)], -1)
        matches = ((neighbor_labels == labels[:, None]) & valid).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            purity.append(matches / valid.sum(axis=1))
        prediction.append(majority_vote(neighbor_labels, sims, valid))
        neighbors.append(ids.astype(np.int64))
        start += len(block)
    if start != len(query.labels):
        raise FeaturesError(f"the query blocks hold {start} rows but {len(query.labels)} labels")
    empty = np.zeros((0, config.k), np.int64)
    return KnnResult(
        labels=np.asarray(query.labels, np.int64),
        neighbors=np.concatenate(neighbors) if neighbors else empty,
        purity=np.concatenate(purity) if purity else np.zeros(0),
        prediction=np.concatenate(prediction) if prediction else np.zeros(0, np.int64),
        index_kind="flat" if ivf is None else "ivf",
        ivf=ivf,
    )


def _index_search(index: faiss.Index, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k neighbours of normalised rows: the CPU IVF index list by list with matrix products
    (`ivf_scan`, about 3x faiss's query-by-query scan at 10k queries), any other as faiss
    searches it (flat, or on the GPU)."""
    if isinstance(index, faiss.IndexIVFFlat):
        return ivf_scan.search(index, rows, k, index.nprobe)
    return index.search(rows, k)


def majority_vote(labels: np.ndarray, sims: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The kNN classifier's decision: the label most neighbours carry.

    Ties between labels with as many votes go to the label with the larger summed cosine
    similarity of its neighbours, then to the smallest label.

    Args:
        labels: int [n, k], the neighbours' labels.
        sims: float [n, k], their cosine similarities to the query.
        valid: bool [n, k], False for a neighbour that was not found.

    Returns:
        int64 [n], the voted label; -1 for a row without any valid neighbour.
    """
    # same[i, j, l]: neighbour l carries neighbour j's label. k is small, so [n, k, k] is
    # cheaper than one-hot votes over all C classes.
    same = (labels[:, :, None] == labels[:, None, :]) & valid[:, None, :]
    votes = np.where(valid, same.sum(axis=2), -1)
    # Neighbours of one label sum the same terms in the same order: exactly equal weights.
    weight = np.where(same, sims[:, None, :].astype(np.float64), 0.0).sum(axis=2)
    best = votes == votes.max(axis=1, keepdims=True)
    best_weight = np.where(best, weight, -np.inf).max(axis=1, keepdims=True)
    best &= weight == best_weight
    chosen = np.where(best, labels, np.iinfo(np.int64).max).min(axis=1)
    return np.where(valid.any(axis=1), chosen, -1).astype(np.int64)


def _build_index(
    rows: FeatureRows, num_rows: int, config: KnnConfig, calibration: _Queries
) -> tuple[faiss.Index, IvfSearch | None, object]:
    """Index of the normalised rows; returns it, how an IVF index is searched (None when
    exact) and what must outlive the index."""
    ivf = num_rows > config.ivf_above
    index = _trained_ivf(rows, num_rows, rows.dim, config) if ivf else faiss.IndexFlatIP(rows.dim)
    for block in rows.numpy_blocks(config.chunk_rows):
        index.add(normalized_rows(block))
    if index.ntotal != num_rows:
        raise FeaturesError(f"the train blocks hold {index.ntotal} rows but {num_rows} labels")
    search = _calibrated(index, rows, calibration, config) if ivf else None
    if not use_gpu(config):
        return index, search, None
    # Built and calibrated on the CPU, then copied: one code path for both devices.
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), search, resources


def _trained_ivf(
    rows: FeatureRows, num_rows: int, dim: int, config: KnnConfig
) -> faiss.IndexIVFFlat:
    """An IVF index whose coarse quantiser is trained on a seeded sample of the rows."""
    nlist = config.nlist or max(1, round(math.sqrt(num_rows)))
    nlist = min(nlist, num_rows)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = config.seed
    index.cp.niter = _IVF_KMEANS_ITERATIONS
    sample = seeded_rows(num_rows, _IVF_TRAIN_PER_LIST * nlist, config.seed)
    index.train(normalized_rows(rows.take_numpy(sample)))
    return index  # `_calibrated` sets its nprobe


def _calibrated(index: faiss.IndexIVFFlat, index_rows: FeatureRows, queries: _Queries,
                config: KnnConfig) -> IvfSearch:
    """Sets the fewest lists (from `config.nprobe`, doubling) whose recall@k on a seeded
    sample of the queries reaches `config.min_recall`. The reference is the exact search of
    that sample (sample x N, not queries x N), one matrix product per block of index rows,
    independent of the index under test."""
    sample = seeded_rows(len(queries.labels), config.recall_queries, config.seed)
    rows = normalized_rows(queries.rows.take_numpy(sample))
    wanted = config.k + 1 if queries.exclude_self else config.k
    exact = exact_neighbors(index_rows, rows, wanted, config.chunk_rows)
    nprobe = min(config.nprobe, index.nlist)
    while True:
        index.nprobe = nprobe
        _, found = _index_search(index, rows, wanted)
        recall = recall_at_k(found, exact)
        if recall >= config.min_recall or nprobe == index.nlist:
            return IvfSearch(index.nlist, nprobe, recall, len(sample))
        nprobe = min(2 * nprobe, index.nlist)


def exact_neighbors(index_rows: FeatureRows, queries: np.ndarray, k: int,
                    chunk_rows: int) -> np.ndarray:
    """The k most cosine-similar index rows of each query, by brute force.

    Args:
        index_rows: [N, D] the indexed rows (normalised here, block by block).
        queries: float32 [n, D], already normalised.
        k: Neighbours per query.
        chunk_rows: Index rows per block (`KnnConfig.chunk_rows`).

    Returns:
        int64 [n, k] row ids, the most similar first (ties: the lower id).
    """
    best_sims = np.full((len(queries), 0), -np.inf, np.float32)
    best_ids = np.zeros((len(queries), 0), np.int64)
    start = 0
    for block in index_rows.numpy_blocks(chunk_rows):
        with _blas_distances():
            sims, ids = faiss.knn(queries, normalized_rows(block), min(k, len(block)),
                                  metric=faiss.METRIC_INNER_PRODUCT)
        best_sims, best_ids = ivf_scan.best_k(
            np.concatenate([best_sims, sims], axis=1),
            np.concatenate([best_ids, ids.astype(np.int64) + start], axis=1), k)
        start += len(block)
    return best_ids


@contextmanager
def _blas_distances() -> Iterator[None]:
    """faiss computes the distances of a brute-force search by one matrix product only from
    ``distance_compute_blas_threshold`` queries on (128,000 in this faiss build), and by one
    dot product per pair below it: 4.5x slower for the few hundred queries of the recall check.
    Lowered for the block, then restored (a process-wide setting)."""
    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbours [n, k] that a search found [n, k] (-1: none found)."""
    hits = sum(len(set(row[row >= 0]) & set(truth[truth >= 0]))
               for row, truth in zip(found, exact, strict=True))
    return hits / max(int((exact >= 0).sum()), 1)


def _drop_self(
    sims: np.ndarray, ids: np.ndarray, self_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Removes each query's own row from its k + 1 hits, by index rather than by rank.

    An exact duplicate has the same similarity as the row itself and may come first; it is a
    genuine neighbour and stays. When the row is not among the hits (duplicates crowd it out,
    or IVF misses it) the last hit goes, leaving k.
    """
    is_self = ids == self_rows[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    rows, width = ids.shape
    return sims[keep].reshape(rows, width - 1), ids[keep].reshape(rows, width - 1)


def _float_rows(values: np.ndarray, name: str, width: int | None = None) -> np.ndarray:
    array = np.asarray(values)
    if (
        array.ndim != 2
        or len(array) == 0
        or (width is not None and array.shape[1] != width)
        or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
    ):
        expected = f"[N, {width if width is not None else 'D'}]"
        raise FeaturesError(
            f"{name}: expected a non-empty real {expected} array, got {array.dtype} {array.shape}"
        )
    if not np.isfinite(array).all():
        raise FeaturesError(f"{name}: contains NaN or inf; fix the features")
    return array


def _labels(values: np.ndarray, name: str, rows: int) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (rows,) or not np.issubdtype(array.dtype, np.integer):
        raise FeaturesError(
            f"{name}: expected integer labels of shape ({rows},), got {array.dtype} {array.shape}"
        )
    return array.astype(np.int64)
