"""kNN purity: tailbank's faiss path vs scikit-learn's brute-force NearestNeighbors (cosine).

One run of each, side by side, on the same seeded, clustered synthetic bank (Gaussian blobs
around 100 class centres). Both sides include their whole work: faiss normalises, builds the
exact inner-product index and searches in blocks; scikit-learn fits and runs `kneighbors`
with metric="cosine", algorithm="brute". The purity arrays must be equal. The ratio is
scikit-learn seconds / faiss seconds. Both sides get the same number of threads: faiss through
`faiss.omp_set_num_threads`, scikit-learn through `n_jobs` and a threadpoolctl limit on BLAS.

    python bench/knn_purity.py                       # 50k train, 10k queries, D = 256, k = 10
    python bench/knn_purity.py --threads 2
    python bench/knn_purity.py --ivf                 # IVF, 200k rows: recall@10 and speed
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from features.analysis.knn import knn_arrays, recall_at_k
from features.configs import KnnConfig

CLASSES = 100
NOISE = 3.0


def synthetic(rows: int, dim: int, seed: int, noise: float = NOISE
              ) -> tuple[np.ndarray, np.ndarray]:
    """Clustered rows: class centres shared by all calls, noise seeded by `seed`."""
    centres = np.random.default_rng(12345).normal(size=(CLASSES, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=rows)
    # Noise 3x a centre's norm: neighbourhoods overlap and the purity is ~0.57, so the
    # comparison is about neighbour sets that matter, not trivially pure ones.
    x = centres[labels] + noise * rng.normal(size=(rows, dim))
    return x.astype(np.float32), labels


def measure(
    n_train: int = 50_000, n_query: int = 10_000, dim: int = 256, k: int = 10, threads: int = 1
) -> dict[str, float | int | bool]:
    """Times faiss and scikit-learn kNN purity of n_query queries against n_train rows.

    Args:
        n_train: Indexed rows.
        n_query: Query rows.
        dim: Feature width D.
        k: Neighbours per query.
        threads: Threads of each side.

    Returns:
        Sizes, seconds of each side, the ratio sklearn / faiss, whether the purity arrays are
        equal, how many rows differ, and the mean purity.
    """
    train_x, train_y = synthetic(n_train, dim, seed=0)
    query_x, query_y = synthetic(n_query, dim, seed=1)
    faiss.omp_set_num_threads(threads)
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        config = KnnConfig(k=k, use_gpu=False)
        ours = knn_arrays(train_x, train_y, query_x, query_y, config, exclude_self=False).purity
        faiss_s = time.perf_counter() - start

        start = time.perf_counter()
        search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=threads)
        neighbours = search.fit(train_x).kneighbors(query_x, return_distance=False)
        theirs = (train_y[neighbours] == query_y[:, None]).mean(axis=1)
        sklearn_s = time.perf_counter() - start
    return {
        "n_train": n_train,
        "n_query": n_query,
        "dim": dim,
        "k": k,
        "threads": threads,
        "faiss_s": faiss_s,
        "sklearn_s": sklearn_s,
        "ratio": sklearn_s / faiss_s,
        "equal": bool(np.array_equal(ours, theirs)),
        "rows_differing": int((ours != theirs).sum()),
        "mean_purity": float(ours.mean()),
    }


def measure_ivf(
    n_train: int = 200_000, n_query: int = 10_000, dim: int = 256, k: int = 10,
    threads: int = 1, noise: float = 2.0,
) -> dict[str, float | int]:
    """Times tailbank's IVF path (its nprobe chosen by measured recall) against scikit-learn's
    brute force, and measures its recall@k on every query against faiss' exact search.

    Args:
        noise: Spread of the rows around their class centres (the exact row's 3.0 gives a
            test purity of about 0.57; 2.0 about the 0.76-0.79 of the default run's banks).
    """
    train_x, train_y = synthetic(n_train, dim, seed=0, noise=noise)
    query_x, query_y = synthetic(n_query, dim, seed=1, noise=noise)
    faiss.omp_set_num_threads(threads)
    with threadpool_limits(limits=threads):
        start = time.perf_counter()
        config = KnnConfig(k=k, ivf_above=n_train - 1, use_gpu=False)
        ivf = knn_arrays(train_x, train_y, query_x, query_y, config, exclude_self=False)
        ivf_s = time.perf_counter() - start
        start = time.perf_counter()
        search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute", n_jobs=threads)
        search.fit(train_x).kneighbors(query_x, return_distance=False)
        sklearn_s = time.perf_counter() - start
        exact = knn_arrays(train_x, train_y, query_x, query_y,
                           KnnConfig(k=k, ivf_above=n_train, use_gpu=False), exclude_self=False)
    return {"n_train": n_train, "n_query": n_query, "dim": dim, "k": k, "threads": threads,
            "noise": noise, "ivf_s": ivf_s, "sklearn_s": sklearn_s, "ratio": sklearn_s / ivf_s,
            "recall": recall_at_k(ivf.neighbors, exact.neighbors), "nlist": ivf.ivf.nlist,
            "nprobe": ivf.ivf.nprobe, "calibration_recall": ivf.ivf.recall,
            "calibration_queries": ivf.ivf.queries, "min_recall": config.min_recall,
            "mean_purity": float(exact.purity.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ivf", action="store_true", help="the IVF row (200k rows by default)")
    args = parser.parse_args()
    if args.ivf:
        print(measure_ivf(threads=args.threads))
        return
    result = measure(args.train, args.queries, args.dim, args.k, args.threads)
    print(
        f"kNN purity, {result['n_query']} queries x {result['n_train']} train rows, "
        f"D={result['dim']}, k={result['k']}, {result['threads']} thread(s), cosine, exact"
    )
    print(f"{'path':<22}{'seconds':>10}")
    print(f"{'faiss IndexFlatIP':<22}{result['faiss_s']:>10.2f}")
    print(f"{'sklearn brute cosine':<22}{result['sklearn_s']:>10.2f}")
    print(f"ratio sklearn / faiss: {result['ratio']:.2f}x")
    print(
        f"mean purity {result['mean_purity']:.4f}; purity arrays equal: {result['equal']} "
        f"({result['rows_differing']} rows differ)"
    )
    assert result["equal"], "faiss and scikit-learn purity differ"


if __name__ == "__main__":
    main()
