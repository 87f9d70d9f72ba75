"""Tests of the head/tail logistic probe: separable groups, class balance, unmeasurable cases."""

from __future__ import annotations

import numpy as np
import pytest

from features.analysis.separability import head_tail_separability
from features.configs import SeparabilityConfig
from features.errors import FeaturesError
from tests.features.synthetic import blobs


def test_probe_separates_linearly_separable_head_and_tail() -> None:
    counts = np.array([200, 150, 100, 30, 10])  # tail: classes 3, 4 (<= 50)
    train_x, train_y = blobs(counts, dim=10, seed=0, spread=1.0)
    test_x, test_y = blobs(np.full(5, 40), dim=10, seed=1, spread=1.0)
    # head and tail apart along the first axis, whatever the class centres
    train_x[:, 0] += np.where(counts[train_y] <= 50, 6.0, -6.0)
    test_x[:, 0] += np.where(counts[test_y] <= 50, 6.0, -6.0)
    result = head_tail_separability(train_x, train_y, test_x, test_y, counts)
    assert result.reason is None
    assert result.balanced_accuracy > 0.95
    assert result.balanced_accuracy == pytest.approx((result.head_recall + result.tail_recall) / 2)
    assert (result.num_head_classes, result.num_tail_classes) == (3, 2)
    again = head_tail_separability(train_x, train_y, test_x, test_y, counts)
    assert again == result


def test_probe_is_balanced_between_groups() -> None:
    # Overlapping groups, 19:1 imbalance: an unweighted probe would call nearly all rows head.
    counts = np.array([950, 50])
    rng = np.random.default_rng(5)
    train_y = np.repeat([0, 1], counts)
    train_x = (rng.normal(size=(1000, 2)) + np.where(train_y == 1, 1.0, 0.0)[:, None]).astype(
        np.float32
    )
    test_y = np.repeat([0, 1], 500)
    test_x = (rng.normal(size=(1000, 2)) + np.where(test_y == 1, 1.0, 0.0)[:, None]).astype(
        np.float32
    )
    result = head_tail_separability(train_x, train_y, test_x, test_y, counts)
    assert 0.6 < result.tail_recall < 0.95 and 0.6 < result.head_recall < 0.95


def test_probe_without_tail_or_head_returns_none_with_reason() -> None:
    x, y = blobs(np.array([60, 70]), dim=3, seed=0)
    no_tail = head_tail_separability(x, y, x, y, np.array([60, 70]))
    assert no_tail.balanced_accuracy is None and no_tail.num_tail_classes == 0
    assert no_tail.reason.startswith("no tail class: every class has more than tail_max_count=50")
    no_head = head_tail_separability(x, y, x, y, np.array([60, 70]), tail_max_count=100)
    assert no_head.balanced_accuracy is None
    assert no_head.reason.startswith("no head class")
    missing = head_tail_separability(x, y, x[y == 0], y[y == 0], np.array([60, 10]))
    assert missing.reason == "the test rows hold no tail class; the probe needs both groups"


def test_separability_config_validation() -> None:
    with pytest.raises(FeaturesError, match="SeparabilityConfig.l2 must be >= 0"):
        SeparabilityConfig(l2=-1.0)
