"""Checked conversions of the arrays every stage-2 function takes (one line when they are wrong)."""

from __future__ import annotations

import numpy as np

from features.errors import FeaturesError


def float_matrix(
    values: np.ndarray, name: str, width: int | None = None, rows: int | None = None
) -> np.ndarray:
    """A finite, C-contiguous float32 copy of a real ``[rows, width]`` matrix.

    Args:
        values: the array to check.
        name: how the message names it.
        width: required column count (any when ``None``).
        rows: required row count (any when ``None``).

    Raises:
        FeaturesError: wrong rank, shape or dtype, or a NaN / infinite entry.
    """
    array = np.asarray(values)
    if (
        array.ndim != 2
        or (width is not None and array.shape[1] != width)
        or (rows is not None and array.shape[0] != rows)
        or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))
    ):
        expected = f"[{rows if rows is not None else 'N'}, {width if width is not None else 'D'}]"
        raise FeaturesError(
            f"{name}: expected a real {expected} array, got {array.dtype} {array.shape}"
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise FeaturesError(f"{name}: contains NaN or inf")
    return array


def label_vector(values: np.ndarray, name: str, rows: int, num_classes: int) -> np.ndarray:
    """An int64 copy of ``rows`` class labels, each in ``[0, num_classes)``.

    Raises:
        FeaturesError: wrong shape or dtype, or a label out of range.
    """
    array = np.asarray(values)
    if array.shape != (rows,) or not np.issubdtype(array.dtype, np.integer):
        raise FeaturesError(
            f"{name}: expected integer labels of shape ({rows},), got {array.dtype} {array.shape}"
        )
    if rows and (array.min() < 0 or array.max() >= num_classes):
        raise FeaturesError(f"{name}: labels must lie in [0, {num_classes}) = len(class_counts)")
    return np.ascontiguousarray(array, dtype=np.int64)
