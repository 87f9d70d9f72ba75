"""Rows scaled to unit length, so that an inner-product index ranks by cosine similarity."""

from __future__ import annotations

import numpy as np

# Zero rows stay zero instead of dividing by zero; their similarity to everything is 0.
_MIN_NORM = 1e-12


def normalized_rows(block: np.ndarray) -> np.ndarray:
    """float32 [r, D] rows scaled to unit L2 norm (zero rows stay zero), C-contiguous.

    The norm and the division are in float64, so the float32 result is the correctly rounded
    unit vector whatever the block size.
    """
    block = np.asarray(block, dtype=np.float64)
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return np.ascontiguousarray(block / np.maximum(norms, _MIN_NORM), dtype=np.float32)
