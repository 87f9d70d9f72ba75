"""`features.analysis.ivf_scan`: the list-by-list IVF search gives faiss's IVF neighbours."""

from __future__ import annotations

import faiss
import numpy as np

from features.analysis import ivf_scan
from features.analysis.cosine import normalized_rows


def ivf_index(rows: np.ndarray, nlist: int) -> faiss.IndexIVFFlat:
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(rows.shape[1]), rows.shape[1], nlist,
                               faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 0
    index.train(rows)
    index.add(rows)
    return index


def clustered(rows: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(20, 32))
    return normalized_rows((centres[rng.integers(0, 20, rows)]
                            + rng.normal(scale=0.8, size=(rows, 32))).astype(np.float32))


def test_it_finds_the_neighbours_faiss_finds_in_the_same_lists() -> None:
    index = ivf_index(clustered(3000, 0), nlist=30)
    queries = clustered(400, 1)
    index.nprobe = 3
    faiss_scores, faiss_ids = index.search(queries, 10)
    scores, ids = ivf_scan.search(index, queries, 10, nprobe=3)
    np.testing.assert_allclose(scores, faiss_scores, atol=1e-5)
    assert np.mean((ids == faiss_ids).all(axis=1)) > 0.99  # a rounding tie may swap two
    assert ids.dtype == np.int64 and scores.dtype == np.float32


def test_visiting_every_list_is_the_exact_search() -> None:
    rows, queries = clustered(2000, 2), clustered(200, 3)
    index = ivf_index(rows, nlist=16)
    _, ids = ivf_scan.search(index, queries, 5, nprobe=16)
    exact = np.argsort(-(queries @ rows.T), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(ids, exact)


def test_lists_with_fewer_than_k_rows_pad_as_faiss_does() -> None:
    rows = clustered(60, 4)
    index = ivf_index(rows, nlist=4)
    index.nprobe = 1
    faiss_scores, faiss_ids = index.search(rows[:5], 40)
    scores, ids = ivf_scan.search(index, rows[:5], 40, nprobe=1)
    np.testing.assert_array_equal(ids == -1, faiss_ids == -1)
    assert np.isneginf(scores[ids == -1]).all()
    np.testing.assert_allclose(scores[ids >= 0], faiss_scores[faiss_ids >= 0], atol=1e-5)


def test_equal_scores_rank_the_lower_row_id_first() -> None:
    rows = clustered(200, 5)
    rows[[150, 40, 90]] = rows[7]  # four copies of one row
    index = ivf_index(rows, nlist=4)
    _, ids = ivf_scan.search(index, rows[7:8], 4, nprobe=4)
    assert ids.tolist() == [[7, 40, 90, 150]]


def test_queries_taken_in_small_batches_find_the_same_neighbours() -> None:
    index = ivf_index(clustered(1000, 6), nlist=10)
    queries = clustered(97, 7)
    whole = ivf_scan.search(index, queries, 5, nprobe=10)
    batched = ivf_scan.search(index, queries, 5, nprobe=10, max_candidates=5 * 10 * 7)
    np.testing.assert_array_equal(batched[1], whole[1])
    # a matrix product of another shape may round the last bit differently (faiss's own
    # BLAS-based flat search does the same); the same batches give the same bits
    np.testing.assert_allclose(batched[0], whole[0], rtol=1e-6)
    again = ivf_scan.search(index, queries, 5, nprobe=10, max_candidates=5 * 10 * 7)
    np.testing.assert_array_equal(again[0], batched[0])
    empty = ivf_scan.search(index, queries[:0], 5, nprobe=2)
    assert empty[0].shape == empty[1].shape == (0, 5)
