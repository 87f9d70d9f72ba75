"""Instance and class-balanced orders: uniform over classes, replayable per epoch."""

from __future__ import annotations

import numpy as np

from pipeline.data.samplers import class_balanced_indices, instance_indices

# A long tail: class k has 2**(9-k) items, so instance sampling would be far from uniform.
LONG_TAIL_LABELS = np.repeat(np.arange(10), 2 ** np.arange(9, -1, -1))


def test_class_balanced_draws_classes_uniformly() -> None:
    draws = 20_000
    indices = class_balanced_indices(LONG_TAIL_LABELS, draws, np.random.default_rng(0))
    observed = np.bincount(LONG_TAIL_LABELS[indices], minlength=10)
    expected = draws / 10
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    # 9 degrees of freedom: the 0.999 quantile is 27.9.
    assert chi_square < 27.9


def test_class_balanced_draws_items_uniformly_within_a_class() -> None:
    indices = class_balanced_indices(LONG_TAIL_LABELS, 20_000, np.random.default_rng(1))
    head_items = indices[LONG_TAIL_LABELS[indices] == 0]
    counts = np.bincount(head_items, minlength=512)
    # 512 head items share ~2,000 draws: every item is reachable, none dominates.
    assert counts.max() < 20 and np.count_nonzero(counts) > 480


def test_class_balanced_ignores_absent_classes_and_defaults_to_n_draws() -> None:
    labels = np.array([7, 7, 7, 2])
    indices = class_balanced_indices(labels, None, np.random.default_rng(0))
    assert len(indices) == 4 and indices.dtype == np.int64
    assert set(labels[indices].tolist()) <= {2, 7}


def test_instance_indices_is_a_permutation() -> None:
    order = instance_indices(50, np.random.default_rng(0))
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(50))
