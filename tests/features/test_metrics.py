"""Tests of the evaluation metrics against values computed by hand on tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from features.errors import FeaturesError
from features.metrics import (
    SHOT_GROUPS,
    evaluate,
    expected_calibration_error,
    frequency_confusion,
    per_class_accuracy,
    shot_groups,
    softmax,
)


def test_shot_groups_boundaries() -> None:
    groups = shot_groups(np.array([101, 100, 20, 19, 0]))
    assert groups.tolist() == ["many", "medium", "medium", "few", "few"]
    assert set(groups) <= set(SHOT_GROUPS)
    assert shot_groups(np.array([5, 3]), many_above=4, few_below=4).tolist() == ["many", "few"]


def test_per_class_accuracy_by_hand() -> None:
    pred = np.array([0, 0, 1, 2, 2, 0])
    labels = np.array([0, 1, 1, 2, 2, 2])
    accuracy = per_class_accuracy(pred, labels, num_classes=4)
    np.testing.assert_allclose(accuracy[:3], [1.0, 0.5, 2 / 3])
    assert math.isnan(accuracy[3])


def test_ece_by_hand() -> None:
    # Confidences 0.9 (right), 0.8 (wrong), 0.55 (right), 0.6 (right); bins of width 0.5:
    # bin (0, .5] is empty; bin (.5, 1] holds all four: acc 3/4, mean conf 0.7125.
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.55, 0.45], [0.4, 0.6]])
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(abs(0.75 - 0.7125))
    # Ten bins: 0.9 -> bin (.8, .9] acc 1; 0.8 -> (.7, .8] acc 0; 0.55 -> (.5, .6] together
    # with 0.6, acc 1, conf 0.575.
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + 2 * abs(1 - 0.575)) / 4
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(expected)


def test_ece_is_zero_for_perfect_calibration() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0


def test_softmax_rows_sum_to_one_and_handle_large_logits() -> None:
    probs = softmax(np.array([[1000.0, 1000.0], [0.0, math.log(3.0)]], dtype=np.float32))
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.25, 0.75]])
    assert probs.dtype == np.float64


def test_evaluate_by_hand() -> None:
    # Classes 0 (many), 1 (medium), 2 (few). Predictions: 0,0 | 1,0 | 2,1.
    class_counts = np.array([200, 50, 5])
    logits = np.array(
        [
            [3.0, 0.0, 0.0],
            [2.0, 1.0, 0.0],
            [0.0, 2.0, 0.0],
            [2.0, 1.0, 0.0],
            [0.0, 0.0, 4.0],
            [0.0, 1.0, 0.0],
        ]
    )
    labels = np.array([0, 0, 1, 1, 2, 2])
    result = evaluate(logits, labels, class_counts)
    assert result.overall == pytest.approx(4 / 6)
    assert (result.many, result.medium, result.few) == pytest.approx((1.0, 0.5, 0.5))
    np.testing.assert_allclose(result.per_class, [1.0, 0.5, 0.5])
    # MCC from its multiclass definition (Gorodkin 2004): c*s - sum p_k t_k over
    # sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)); p = (3, 2, 1), t = (2, 2, 2), c = 4, s = 6.
    numerator = 4 * 6 - (3 * 2 + 2 * 2 + 1 * 2)
    denominator = math.sqrt((36 - (9 + 4 + 1)) * (36 - 12))
    assert result.mcc == pytest.approx(numerator / denominator)
    probs = softmax(logits)
    assert result.ece == pytest.approx(expected_calibration_error(probs, labels, bins=15))
    assert 0.0 < result.nmi < 1.0


def test_evaluate_perfect_predictions() -> None:
    logits = np.eye(3) * 5.0
    result = evaluate(logits, np.array([0, 1, 2]), np.array([200, 50, 5]))
    assert result.overall == result.mcc == pytest.approx(1.0)
    assert result.nmi == pytest.approx(1.0)


def test_nmi_by_hand() -> None:
    # Labels (0, 0, 1, 1), predictions (0, 0, 0, 0): the prediction carries no information.
    logits = np.array([[1.0, 0.0]] * 4)
    result = evaluate(logits, np.array([0, 0, 1, 1]), np.array([150, 150]))
    assert result.nmi == pytest.approx(0.0)
    assert math.isnan(result.medium) and math.isnan(result.few)


def test_summary_turns_empty_groups_into_none() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 2.0]])
    summary = evaluate(logits, np.array([0, 1]), np.array([500, 400])).summary()
    assert list(summary) == ["overall", "many", "medium", "few", "mcc", "nmi", "ece"]
    assert summary["medium"] is None and summary["few"] is None
    assert summary["many"] == 1.0


@pytest.mark.parametrize(
    ("logits", "labels", "counts"),
    [
        (np.ones((2, 3)), np.array([0, 1]), np.array([1, 1])),
        (np.ones((2, 2)), np.array([0, 2]), np.array([1, 1])),
        (np.ones((2, 2)), np.array([0]), np.array([1, 1])),
        (np.full((2, 2), np.nan), np.array([0, 1]), np.array([1, 1])),
        (np.ones((0, 2)), np.array([], dtype=np.int64), np.array([1, 1])),
    ],
)
def test_evaluate_rejects_bad_inputs(
    logits: np.ndarray, labels: np.ndarray, counts: np.ndarray
) -> None:
    with pytest.raises(FeaturesError):
        evaluate(logits, labels, counts)


def test_frequency_confusion_matches_a_direct_count() -> None:
    counts = np.array([5, 50, 20, 50, 1, 9])  # by frequency: 1, 3, 2, 5, 0, 4
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=200)
    predicted = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, size=200))
    result = frequency_confusion(predicted, labels, counts, bins=3)
    bins = [[1, 3], [2, 5], [0, 4]]
    assert [b["classes"] for b in result["bins"]] == bins
    assert [(b["min_count"], b["max_count"]) for b in result["bins"]] == [(50, 50), (9, 20), (1, 5)]
    expected = np.zeros((3, 3))
    for a, true_bin in enumerate(bins):
        rows = np.isin(labels, true_bin)
        for b, predicted_bin in enumerate(bins):
            expected[a, b] = np.isin(predicted[rows], predicted_bin).mean()
    np.testing.assert_allclose(result["matrix"], expected)
    assert [b["rows"] for b in result["bins"]] == [int(np.isin(labels, b).sum()) for b in bins]
    # more bins than classes: one class per bin
    assert len(frequency_confusion(predicted, labels, counts, bins=10)["matrix"]) == 6
