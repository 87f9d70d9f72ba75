"""k-nearest-neighbour purity and accuracy of a bank's rows on cosine similarity (faiss).

Rows are L2-normalised, so the inner product that the faiss index ranks by is the cosine
similarity. The train side is added to the index block by block and the queries are searched
block by block, so neither split has to be one array in memory; faiss holds the index itself.
Arrays and banks go through the same blocked code, so both give the same numbers.

Index: exact `IndexFlatIP` up to `KnnConfig.ivf_above` train rows, `IndexIVFFlat` (nlist ~
4 sqrt(N) inverted lists, trained on a seeded sample, `nprobe` lists searched) above it;
on the GPU when faiss sees one and `use_gpu` allows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from features.bank import Bank
from features.configs import KnnConfig
from features.errors import ConfigError, FeaturesError
from features.metrics import SHOT_GROUPS, shot_groups

# A split's rows of one field, as consecutive blocks; called again for each pass over them.
ChunkSource = Callable[[], Iterator[np.ndarray]]

# Rows of the IVF training sample per inverted list: faiss warns below 39 and samples 256.
_IVF_TRAIN_PER_LIST = 64
# Zero rows stay zero instead of dividing by zero; their similarity to everything is 0.
_MIN_NORM = 1e-12


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
    """

    labels: np.ndarray
    neighbors: np.ndarray
    purity: np.ndarray
    prediction: np.ndarray
    index_kind: str

    @property
    def correct(self) -> np.ndarray:
        """float64 [N], 1 where the kNN classifier's vote is the query's label, else 0."""
        return (self.prediction == self.labels).astype(np.float64)

    def summary(
        self, class_counts: np.ndarray, many_above: int = 100, few_below: int = 20
    ) -> dict[str, dict[str, float | None]]:
        """Mean purity and accuracy over all queries and per shot group (None when empty)."""
        return {
            "purity": group_means(self.purity, self.labels, class_counts, many_above, few_below),
            "accuracy": group_means(self.correct, self.labels, class_counts, many_above, few_below),
        }


def knn_purity(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    k: int,
    *,
    exclude_self: bool,
    chunk_rows: int = 8192,
    use_gpu: bool | str = "auto",
) -> np.ndarray:
    """Share of each query's k nearest train rows (cosine) that carry the query's label.

    Args:
        train_x: float [N, D], the indexed rows.
        train_y: int [N], their labels.
        query_x: float [M, D]; with `exclude_self`, the train rows themselves (M = N).
        query_y: int [M].
        k: Neighbours per query.
        exclude_self: Query i is train row i and is not its own neighbour.
        chunk_rows: Rows per block added or searched.
        use_gpu: See `KnnConfig.use_gpu`.

    Returns:
        float64 [M].
    """
    config = KnnConfig(k=k, chunk_rows=chunk_rows, use_gpu=use_gpu)
    return knn_arrays(train_x, train_y, query_x, query_y, config, exclude_self=exclude_self).purity


def knn_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    k: int,
    *,
    exclude_self: bool,
    chunk_rows: int = 8192,
    use_gpu: bool | str = "auto",
) -> np.ndarray:
    """Whether the kNN classifier (see `majority_vote`) gets each query right.

    Args:
        train_x: float [N, D], the indexed rows.
        train_y: int [N], their labels.
        query_x: float [M, D]; with `exclude_self`, the train rows themselves (M = N).
        query_y: int [M].
        k: Neighbours per query.
        exclude_self: Query i is train row i and is not its own neighbour.
        chunk_rows: Rows per block added or searched.
        use_gpu: See `KnnConfig.use_gpu`.

    Returns:
        float64 [M], 1 for a correct vote, else 0.
    """
    config = KnnConfig(k=k, chunk_rows=chunk_rows, use_gpu=use_gpu)
    return knn_arrays(train_x, train_y, query_x, query_y, config, exclude_self=exclude_self).correct


def knn_arrays(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    config: KnnConfig,
    *,
    exclude_self: bool,
) -> KnnResult:
    """kNN search of in-memory rows.

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
    return knn_search(
        array_chunks(train_x, config.chunk_rows),
        train_y,
        array_chunks(query_x, config.chunk_rows),
        query_y,
        config,
        exclude_self=exclude_self,
    )


def knn_bank(
    bank: Bank,
    config: KnnConfig,
    *,
    index_split: str = "train",
    query_split: str = "test",
    field: str = "features",
) -> KnnResult:
    """kNN search of one split of a bank against another, streamed in `chunk_rows` blocks.

    When `query_split == index_split` each row is left out of its own neighbours.

    Args:
        bank: An open bank.
        config: Index and search settings.
        index_split: Split whose rows are indexed.
        query_split: Split whose rows are searched.
        field: `features` or `extra/<name>`, the view of the rows.

    Returns:
        Neighbours, purity and votes of every query row.
    """
    return knn_bank_queries(
        bank, config, index_split=index_split, query_splits=(query_split,), field=field
    )[query_split]


def knn_bank_queries(
    bank: Bank,
    config: KnnConfig,
    *,
    index_split: str,
    query_splits: tuple[str, ...],
    field: str = "features",
) -> dict[str, KnnResult]:
    """`knn_bank` of several query splits against one index, built (and read) once.

    Returns:
        Query split -> its neighbours, purity and votes.
    """
    train_y = bank.labels(index_split)
    for split in query_splits:
        config.check_k(len(train_y), split == index_split)
    index, kind, _resources = _build_index(
        bank_chunks(bank, index_split, field, config.chunk_rows), len(train_y), config
    )
    return {
        split: _search(index, kind, train_y,
                       bank_chunks(bank, split, field, config.chunk_rows), bank.labels(split),
                       config, exclude_self=split == index_split)
        for split in query_splits
    }


def knn_search(
    train: ChunkSource,
    train_y: np.ndarray,
    queries: ChunkSource,
    query_y: np.ndarray,
    config: KnnConfig,
    *,
    exclude_self: bool,
) -> KnnResult:
    """kNN search of blocks of rows; the common path of arrays and banks.

    Args:
        train: Blocks float [r, D] of the N indexed rows.
        train_y: int64 [N], their labels.
        queries: Blocks float [r, D] of the M query rows; with `exclude_self`, the train rows.
        query_y: int64 [M].
        config: Index and search settings.
        exclude_self: Query i is train row i and is not its own neighbour.

    Returns:
        Neighbours, purity and votes of every query.
    """
    config.check_k(len(train_y), exclude_self)
    index, kind, _resources = _build_index(train, len(train_y), config)
    return _search(index, kind, train_y, queries, query_y, config, exclude_self=exclude_self)


def _search(
    index: faiss.Index,
    kind: str,
    train_y: np.ndarray,
    queries: ChunkSource,
    query_y: np.ndarray,
    config: KnnConfig,
    *,
    exclude_self: bool,
) -> KnnResult:
    """Searches blocks of query rows in a built index (see `knn_search`)."""
    wanted = config.k + 1 if exclude_self else config.k
    neighbors, purity, prediction = [], [], []
    start = 0
    for block in queries():
        block = normalized_rows(block)
        sims, ids = index.search(block, wanted)
        if exclude_self:
            sims, ids = _drop_self(sims, ids, np.arange(start, start + len(block)))
        labels = query_y[start : start + len(block)]
        valid = ids >= 0
        neighbor_labels = np.where(valid, train_y[np.maximum(ids, 0)], -1)
        matches = ((neighbor_labels == labels[:, None]) & valid).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            purity.append(matches / valid.sum(axis=1))
        prediction.append(majority_vote(neighbor_labels, sims, valid))
        neighbors.append(ids.astype(np.int64))
        start += len(block)
    if start != len(query_y):
        raise FeaturesError(f"the query blocks hold {start} rows but {len(query_y)} labels")
    empty = np.zeros((0, config.k), np.int64)
    return KnnResult(
        labels=np.asarray(query_y, np.int64),
        neighbors=np.concatenate(neighbors) if neighbors else empty,
        purity=np.concatenate(purity) if purity else np.zeros(0),
        prediction=np.concatenate(prediction) if prediction else np.zeros(0, np.int64),
        index_kind=kind,
    )


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


def group_means(
    values: np.ndarray,
    labels: np.ndarray,
    class_counts: np.ndarray,
    many_above: int = 100,
    few_below: int = 20,
) -> dict[str, float | None]:
    """Mean of per-row values over all rows and over the rows of each shot group.

    Args:
        values: float [N], NaN entries are skipped.
        labels: int [N], each row's class.
        class_counts: int [C], training rows per class (defines the groups).
        many_above: See `features.metrics.shot_groups`.
        few_below: See `features.metrics.shot_groups`.

    Returns:
        {"overall", "many", "medium", "few"} -> mean, None for no (non-NaN) rows.
    """
    values = np.asarray(values, np.float64)
    row_group = shot_groups(class_counts, many_above, few_below)[np.asarray(labels, np.int64)]
    means = {"overall": _nan_mean(values)}
    means |= {group: _nan_mean(values[row_group == group]) for group in SHOT_GROUPS}
    return means


def class_means(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean of per-row values over each class's rows.

    Args:
        values: float [N], NaN entries are skipped.
        labels: int [N] in [0, C).
        num_classes: C.

    Returns:
        float64 [C], NaN for a class without (non-NaN) rows.
    """
    values = np.asarray(values, np.float64)
    keep = ~np.isnan(values)
    labels = np.asarray(labels, np.int64)[keep]
    totals = np.bincount(labels, weights=values[keep], minlength=num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / counts, np.nan)


def normalized_rows(block: np.ndarray) -> np.ndarray:
    """float32 [r, D] rows scaled to unit L2 norm (zero rows stay zero), C-contiguous."""
    block = np.asarray(block, dtype=np.float64)
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return np.ascontiguousarray(block / np.maximum(norms, _MIN_NORM), dtype=np.float32)


def array_chunks(x: np.ndarray, rows: int) -> ChunkSource:
    """The rows of an array as a `ChunkSource` of `rows`-row blocks."""
    return lambda: (x[start : start + rows] for start in range(0, len(x), rows))


def bank_chunks(bank: Bank, split: str, field: str, rows: int) -> ChunkSource:
    """One field of a bank's split as a `ChunkSource` of `rows`-row blocks."""
    return lambda: bank.iter_chunks(split, field, rows=rows)


def take_rows(chunks: ChunkSource, rows: np.ndarray) -> np.ndarray:
    """Gathers rows by index in one pass over the blocks.

    Args:
        chunks: The blocks of a split.
        rows: int [m], sorted ascending, unique row indices.

    Returns:
        [m, ...] the rows, in the order of `rows`.
    """
    picked, start = [], 0
    for block in chunks():
        stop = start + len(block)
        low, high = np.searchsorted(rows, [start, stop])
        picked.append(np.asarray(block)[rows[low:high] - start])
        start = stop
    return np.concatenate(picked)


def seeded_rows(num_rows: int, size: int, seed: int) -> np.ndarray:
    """int64 [min(size, num_rows)], sorted distinct rows drawn uniformly with `seed`."""
    if size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)


def _build_index(
    train: ChunkSource, num_train: int, config: KnnConfig
) -> tuple[faiss.Index, str, object]:
    """Index of the normalised train rows; returns it, its kind and what must outlive it."""
    first = next(iter(train()))
    dim = first.shape[1]
    if num_train > config.ivf_above:
        index, kind = _trained_ivf(train, num_train, dim, config), "ivf"
    else:
        index, kind = faiss.IndexFlatIP(dim), "flat"
    for block in train():
        index.add(normalized_rows(block))
    if index.ntotal != num_train:
        raise FeaturesError(f"the train blocks hold {index.ntotal} rows but {num_train} labels")
    if not use_gpu(config):
        return index, kind, None
    # Built on the CPU and copied: one code path for both devices.
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), kind, resources


def _trained_ivf(
    train: ChunkSource, num_train: int, dim: int, config: KnnConfig
) -> faiss.IndexIVFFlat:
    nlist = config.nlist or max(1, round(4 * math.sqrt(num_train)))
    nlist = min(nlist, num_train)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = config.seed
    rows = seeded_rows(num_train, _IVF_TRAIN_PER_LIST * nlist, config.seed)
    index.train(normalized_rows(take_rows(train, rows)))
    index.nprobe = min(config.nprobe, nlist)
    return index


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


def _nan_mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


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
