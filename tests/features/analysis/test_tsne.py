"""The class-stratified sample behind the report's t-SNE."""

from __future__ import annotations

import numpy as np

from features.analysis.tsne import stratified_rows


def test_stratified_rows_take_every_class_alike() -> None:
    labels = np.repeat(np.arange(4), [100, 30, 5, 2])
    rows = stratified_rows(labels, 16, seed=3)
    assert len(rows) == 16 and len(np.unique(rows)) == 16
    assert np.all(np.diff(rows) > 0)
    per_class = np.bincount(labels[rows], minlength=4)
    assert per_class[2] >= 4 and per_class[3] == 2  # small classes are not drowned out
    np.testing.assert_array_equal(stratified_rows(labels, 16, seed=3), rows)
    np.testing.assert_array_equal(stratified_rows(labels, 500, seed=3), np.arange(137))
