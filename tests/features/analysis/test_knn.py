"""Tests of the faiss kNN purity and accuracy against brute force, streamed and in memory."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from features.analysis.groups import class_means, group_means
from features.analysis.knn import knn_arrays, knn_bank, majority_vote, recall_at_k, use_gpu
from features.analysis.sample import seeded_rows
from features.bank import Bank, BankMeta, BankWriter
from features.bank.rows import ArrayRows, BankRows
from features.configs import KnnConfig
from features.errors import FeaturesError


def clustered(
    rows: int, classes: int, dim: int, seed: int, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around random class centres; overlap grows with `spread`."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(1234).normal(size=(classes, dim))
    labels = rng.integers(0, classes, size=rows)
    x = centres[labels] + spread * rng.normal(size=(rows, dim))
    return x.astype(np.float32), labels


def brute_force(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    query_y: np.ndarray,
    k: int,
    exclude_self: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct transcription: cosine similarity of every pair, top k, purity and vote."""
    t = train_x / np.linalg.norm(train_x, axis=1, keepdims=True)
    q = query_x / np.linalg.norm(query_x, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ t.astype(np.float64).T
    if exclude_self:
        np.fill_diagonal(sims, -np.inf)
    neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    purity = np.array(
        [np.mean(train_y[row] == label) for row, label in zip(neighbours, query_y, strict=True)]
    )
    votes = []
    for i, row in enumerate(neighbours):
        tally: dict[int, tuple[int, float]] = {}
        for j in row:
            count, total = tally.get(int(train_y[j]), (0, 0.0))
            tally[int(train_y[j])] = (count + 1, total + sims[i, j])
        # most votes, then largest summed similarity, then smallest label
        votes.append(min(tally, key=lambda label: (-tally[label][0], -tally[label][1], label)))
    return neighbours, purity, np.array(votes)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_purity_and_accuracy_match_brute_force(exclude_self: bool) -> None:
    train_x, train_y = clustered(300, 5, 16, seed=0, spread=1.5)
    if exclude_self:
        query_x, query_y = train_x, train_y
    else:
        query_x, query_y = clustered(120, 5, 16, seed=1, spread=1.5)
    k = 7
    neighbours, purity, votes = brute_force(train_x, train_y, query_x, query_y, k, exclude_self)
    assert 0.2 < purity.mean() < 0.95  # neither trivial nor hopeless
    result = knn_arrays(
        train_x, train_y, query_x, query_y, KnnConfig(k=k, chunk_rows=50), exclude_self=exclude_self
    )
    np.testing.assert_array_equal(np.sort(result.neighbors, axis=1), np.sort(neighbours, axis=1))
    np.testing.assert_allclose(result.purity, purity, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.prediction, votes)
    # the default blocks (one block here) give the same purity as blocks of 50 rows
    default = knn_arrays(
        train_x, train_y, query_x, query_y, KnnConfig(k=k), exclude_self=exclude_self
    )
    np.testing.assert_array_equal(default.purity, result.purity)
    np.testing.assert_array_equal(default.correct, (votes == query_y).astype(np.float64))
    assert result.index_kind == "flat"


def test_exclude_self_drops_the_row_by_index_not_by_rank() -> None:
    # Rows 0-2 are the same point with labels 0, 1, 1: each one's nearest neighbours are
    # the other two (similarity 1, tied with itself), never itself.
    rng = np.random.default_rng(3)
    x = np.concatenate([np.ones((3, 4)), rng.normal(size=(20, 4))]).astype(np.float32)
    y = np.concatenate([[0, 1, 1], rng.integers(0, 2, size=20)])
    result = knn_arrays(x, y, x, y, KnnConfig(k=2), exclude_self=True)
    for row in range(3):
        assert set(result.neighbors[row]) == {0, 1, 2} - {row}
    np.testing.assert_array_equal(result.purity[:3], [0.0, 0.5, 0.5])
    assert not (result.neighbors == np.arange(len(x))[:, None]).any()


def test_majority_vote_breaks_ties_by_summed_similarity_then_smallest_label() -> None:
    labels = np.array([[1, 2, 1, 2], [3, 1, 3, 1], [4, 0, 0, 4], [5, 6, 6, 5]])
    sims = np.array(
        [
            [0.9, 0.8, 0.1, 0.3],  # 2 votes each; label 2 sums 1.1 > 1.0
            [0.5, 0.5, 0.5, 0.5],  # 2 votes each, equal sums: smallest label 1
            [0.9, 0.1, 0.1, 0.1],  # 2 votes each; label 4 sums 1.0 > 0.2
            [0.9, 0.9, 0.9, 0.9],  # valid mask leaves one 5 and two 6s
        ]
    )
    valid = np.array([[True] * 4, [True] * 4, [True] * 4, [True, True, True, False]])
    np.testing.assert_array_equal(majority_vote(labels, sims, valid), [2, 1, 4, 6])
    assert majority_vote(labels[:1], sims[:1], np.zeros((1, 4), bool))[0] == -1


def test_k_larger_than_train_rows_is_one_clear_error() -> None:
    x, y = clustered(10, 2, 4, seed=0)
    with pytest.raises(
        FeaturesError,
        match=r"^KnnConfig.k is larger than the 10 neighbours available \(10 train rows\); set k <= 10 or use a bigger bank, got 11",
    ):
        knn_arrays(x, y, x[:3], y[:3], KnnConfig(k=11), exclude_self=False)
    with pytest.raises(
        FeaturesError,
        match=r"KnnConfig.k is larger than the 9 neighbours available \(10 train rows minus the query itself\); set k <= 9",
    ):
        knn_arrays(x, y, x, y, KnnConfig(k=10), exclude_self=True)
    assert knn_arrays(x, y, x, y, KnnConfig(k=9), exclude_self=True).purity.shape == (10,)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"k": 0}, "KnnConfig.k must be >= 1"),
        ({"chunk_rows": 0}, "KnnConfig.chunk_rows must be >= 1"),
        ({"nprobe": 1.5}, "KnnConfig.nprobe must be an integer"),
        ({"nlist": 0}, "KnnConfig.nlist must be >= 1"),
        ({"use_gpu": "yes"}, "KnnConfig.use_gpu must be one of 'auto', True, False"),
    ],
)
def test_config_validation(overrides: dict, message: str) -> None:
    with pytest.raises(FeaturesError, match=message):
        KnnConfig(**overrides)


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="needs a machine without a GPU")
def test_gpu_required_without_gpu_is_an_error() -> None:
    assert use_gpu(KnnConfig()) is False
    with pytest.raises(FeaturesError, match="faiss sees none"):
        use_gpu(KnnConfig(use_gpu=True))


def test_exclude_self_needs_the_train_rows_as_queries() -> None:
    x, y = clustered(20, 2, 4, seed=0)
    with pytest.raises(FeaturesError, match="exclude_self needs the train rows as queries"):
        knn_arrays(x, y, x[:5], y[:5], KnnConfig(k=3), exclude_self=True)


def test_ivf_purity_is_close_to_flat_on_clustered_data() -> None:
    train_x, train_y = clustered(3000, 10, 16, seed=0, spread=0.8)
    query_x, query_y = clustered(300, 10, 16, seed=1, spread=0.8)
    flat = knn_arrays(train_x, train_y, query_x, query_y, KnnConfig(k=10), exclude_self=False)
    ivf_config = KnnConfig(k=10, ivf_above=1000, nlist=20, nprobe=4)
    ivf = knn_arrays(train_x, train_y, query_x, query_y, ivf_config, exclude_self=False)
    assert flat.index_kind == "flat" and ivf.index_kind == "ivf"
    assert 0.5 < flat.purity.mean() < 1.0
    assert abs(ivf.purity.mean() - flat.purity.mean()) < 0.02
    assert np.mean(ivf.prediction == flat.prediction) > 0.95
    # seeded training sample and k-means: the same again
    again = knn_arrays(train_x, train_y, query_x, query_y, ivf_config, exclude_self=False)
    np.testing.assert_array_equal(again.neighbors, ivf.neighbors)


def test_recall_at_k_counts_the_exact_neighbours_found() -> None:
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 2, 9], [6, -1, -1]])
    assert recall_at_k(found, exact) == pytest.approx(3 / 6)
    assert recall_at_k(exact, exact) == 1.0


def test_ivf_visits_lists_until_its_measured_recall_reaches_the_target() -> None:
    train_x, train_y = clustered(4000, 20, 16, seed=0, spread=1.5)
    query_x, query_y = clustered(400, 20, 16, seed=1, spread=1.5)
    exact = knn_arrays(train_x, train_y, query_x, query_y, KnnConfig(k=10), exclude_self=False)
    settings = {"k": 10, "ivf_above": 1000, "nlist": 64, "nprobe": 1, "recall_queries": 400}
    unchecked = knn_arrays(train_x, train_y, query_x, query_y,
                           KnnConfig(**settings, min_recall=0.0), exclude_self=False)
    checked = knn_arrays(train_x, train_y, query_x, query_y,
                         KnnConfig(**settings, min_recall=0.99), exclude_self=False)
    assert unchecked.ivf.nprobe == 1 and unchecked.ivf.recall < 0.99  # one list is not enough
    assert checked.ivf.nprobe > 1 and checked.ivf.recall >= 0.99
    # the sample is every query here, so the recorded recall is the recall of the result
    assert recall_at_k(checked.neighbors, exact.neighbors) == pytest.approx(checked.ivf.recall)
    assert exact.ivf is None


def write_bank(path: Path, train: tuple, test: tuple, classes: int) -> None:
    dim = train[0].shape[1]
    meta = BankMeta(
        method="ce",
        backbone="resnet32",
        dataset="digits_lt",
        num_classes=classes,
        feature_dim=dim,
        seed=0,
        params_digest="a" * 64,
        checkpoint_sha256="b" * 64,
        class_counts=np.bincount(train[1], minlength=classes).astype(np.int64),
        tailbank_version="0.1.0",
    )
    with BankWriter(path, meta, chunk_bytes=512) as writer:
        for split, (x, y) in (("train", train), ("test", test)):
            # several appends, so the file's blocks differ from the search's blocks
            for start in range(0, len(y), 97):
                rows = slice(start, start + 97)
                writer.append(
                    split,
                    features=x[rows],
                    labels=y[rows],
                    index=np.arange(len(y))[rows],
                    extra={"z": x[rows, :3]},
                )


@pytest.mark.parametrize("ivf", [False, True])
def test_chunked_bank_path_equals_in_memory_path(tmp_path: Path, ivf: bool) -> None:
    train = clustered(600, 6, 12, seed=0, spread=1.2)
    test = clustered(150, 6, 12, seed=1, spread=1.2)
    write_bank(tmp_path / "bank.h5", train, test, classes=6)
    ivf_settings = {"ivf_above": 100, "nlist": 8, "nprobe": 2} if ivf else {}
    chunked = KnnConfig(k=5, chunk_rows=13, **ivf_settings)
    whole = KnnConfig(k=5, chunk_rows=100_000, **ivf_settings)
    with Bank.open(tmp_path / "bank.h5") as bank:
        for field in ("features", "extra/z"):
            view = (lambda x: x) if field == "features" else (lambda x: x[:, :3])
            for query, exclude in ((test, False), (train, True)):
                split = "train" if exclude else "test"
                from_bank = knn_bank(bank, chunked, query_splits=(split,), field=field)[split]
                in_memory = knn_arrays(
                    view(train[0]), train[1], view(query[0]), query[1], whole, exclude_self=exclude
                )
                assert from_bank.index_kind == ("ivf" if ivf else "flat")
                np.testing.assert_array_equal(from_bank.neighbors, in_memory.neighbors)
                np.testing.assert_allclose(from_bank.purity, in_memory.purity, atol=1e-6)
                np.testing.assert_array_equal(from_bank.prediction, in_memory.prediction)


def test_group_and_class_means() -> None:
    counts = np.array([150, 50, 5])  # many, medium, few
    labels = np.array([0, 0, 1, 2, 2, 2])
    values = np.array([1.0, 0.0, 0.5, 1.0, np.nan, 0.0])
    means = group_means(values, labels, counts)
    assert means == {"overall": 0.5, "many": 0.5, "medium": 0.5, "few": 0.5}
    assert group_means(values[:2], labels[:2], counts)["few"] is None
    np.testing.assert_array_equal(class_means(values, labels, 4), [0.5, 0.5, 0.5, np.nan])


def test_take_rows_gathers_across_blocks(tmp_path: Path) -> None:
    x = np.arange(50).reshape(25, 2)
    rows = seeded_rows(25, 9, seed=4)
    assert len(rows) == 9 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(ArrayRows(x).take_numpy(rows), x[rows])
    np.testing.assert_array_equal(seeded_rows(5, 9, seed=0), np.arange(5))
    # the same rows gathered from a bank, and its blocks of 4 rows in order
    train = (x.astype(np.float32), np.arange(25) % 3)
    write_bank(tmp_path / "bank.h5", train, (train[0][:4], train[1][:4]), classes=3)
    with Bank.open(tmp_path / "bank.h5") as bank:
        from_bank = BankRows(bank, "train", window_rows=4)
        np.testing.assert_array_equal(from_bank.take_numpy(rows), x[rows])
        np.testing.assert_array_equal(np.concatenate(list(from_bank.numpy_blocks(4))), x)


def test_the_recall_reference_is_the_exact_cosine_neighbours_block_by_block() -> None:
    """The calibration's reference: every query's k most similar rows over all blocks (ties:
    the lower id), as a plain argsort of the full similarity matrix; faiss' process-wide BLAS
    threshold is left as it was."""
    from features.analysis.cosine import normalized_rows
    from features.analysis.knn import exact_neighbors

    rng = np.random.default_rng(4)
    rows = rng.normal(size=(50, 6)).astype(np.float32)
    rows[37] = rows[3]  # a tie: the lower id comes first
    queries = normalized_rows(np.concatenate([rows[3:4], rng.normal(size=(7, 6))]).astype(
        np.float32))
    threshold = faiss.cvar.distance_compute_blas_threshold
    found = exact_neighbors(ArrayRows(rows), queries, k=5, chunk_rows=16)
    assert faiss.cvar.distance_compute_blas_threshold == threshold
    sims = queries @ normalized_rows(rows).T
    expected = np.array([sorted(range(50), key=lambda i: (-round(float(s[i]), 5), i))[:5]
                         for s in sims])
    np.testing.assert_array_equal(found, expected)
    assert found[0][:2].tolist() == [3, 37]
