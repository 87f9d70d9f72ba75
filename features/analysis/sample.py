"""Seeded samples of rows: the IVF training rows, the k-means sample, the probe's rows."""

from __future__ import annotations

import numpy as np


def seeded_rows(num_rows: int, size: int, seed: int) -> np.ndarray:
    """int64 [min(size, num_rows)], sorted distinct rows drawn uniformly with `seed`.

    Sorted, so that a bank reads them in one forward pass over its chunks.
    """
    if size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)
