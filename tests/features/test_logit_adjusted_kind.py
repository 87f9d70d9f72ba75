"""The `logit_adjusted` classifier kind: stored logits minus tau log pi, tau chosen on val."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from features.classifiers import FittedClassifier, fit_classifier
from features.classifiers.payload import classifier_from_payload, classifier_payload
from features.configs import ProbeConfig
from features.errors import FeaturesError

COUNTS = np.array([400, 150, 50, 15, 5])
GRID = (0.0, 0.5, 1.0, 1.5, 2.0)
CONFIG = ProbeConfig(tau_grid=GRID, seed=0)


def _rows(labels: np.ndarray, rng: np.random.Generator, dim: int = 4) -> np.ndarray:
    return rng.normal(size=(len(labels), dim)).astype(np.float32)


def _biased_logits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logits of a head trained on the long tail: true signal plus the log prior."""
    signal = 2.0 * np.eye(len(COUNTS))[labels] + rng.normal(size=(len(labels), len(COUNTS)))
    return (signal + np.log(COUNTS / COUNTS.sum())).astype(np.float32)


def _fit(val_logits: np.ndarray, val_y: np.ndarray, rng: np.random.Generator) -> FittedClassifier:
    train_y = np.repeat(np.arange(len(COUNTS)), COUNTS // 5)
    return fit_classifier(
        "logit_adjusted", train_x=_rows(train_y, rng), train_y=train_y,
        val_x=_rows(val_y, rng), val_y=val_y, class_counts=COUNTS, config=CONFIG,
        head_logits=(_biased_logits(train_y, rng), val_logits),
    )


def test_scores_are_eq9_of_the_stored_logits() -> None:
    rng = np.random.default_rng(0)
    val_y = np.repeat(np.arange(len(COUNTS)), 40)
    fitted = _fit(_biased_logits(val_y, rng), val_y, rng)
    tau = fitted.selected["tau"]
    test = rng.normal(size=(7, len(COUNTS))).astype(np.float32)
    expected = test - tau * np.log(COUNTS / COUNTS.sum())  # Menon et al. 2021, Eq. 9
    np.testing.assert_allclose(fitted.logits(test), expected, rtol=1e-6, atol=1e-6)
    assert fitted.input_field == "logits" and fitted.model is None
    assert tau == pytest.approx(1.0, abs=0.5)  # the prior added above is undone near tau 1


def test_tau_is_chosen_on_val_alone() -> None:
    """Val logits that favour tau = 0 (no shift) give tau = 0; test rows are never passed."""
    rng = np.random.default_rng(1)
    val_y = np.repeat(np.arange(len(COUNTS)), 20)
    # val rows whose correct class wins by exactly the margin that any shift would undo for
    # the tail: every tau > 0 loses accuracy, so val must choose 0
    head_favoured = np.eye(len(COUNTS))[val_y] * 0.01 + np.zeros((len(val_y), len(COUNTS)))
    head_favoured[:, 0] += 0.005 * (val_y == 0)
    fitted = _fit(head_favoured.astype(np.float32), val_y, rng)
    assert fitted.selected["tau"] == 0.0
    biased = _fit(_biased_logits(val_y, rng), val_y, rng)
    assert biased.selected["tau"] > 0.0
    predicted = fitted.logits(head_favoured.astype(np.float32)).argmax(axis=1)
    assert fitted.selected["val_accuracy"] == pytest.approx(float((predicted == val_y).mean()))


def test_needs_stored_logits() -> None:
    labels = np.repeat(np.arange(len(COUNTS)), 4)
    rows = _rows(labels, np.random.default_rng(2))
    with pytest.raises(FeaturesError, match="logit_adjusted.*logits"):
        fit_classifier("logit_adjusted", train_x=rows, train_y=labels, val_x=rows, val_y=labels,
                       class_counts=COUNTS, config=CONFIG)


def test_payload_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(3)
    val_y = np.repeat(np.arange(len(COUNTS)), 20)
    fitted = _fit(_biased_logits(val_y, rng), val_y, rng)
    path = tmp_path / "classifier.pt"
    torch.save(classifier_payload(fitted), path)
    again = classifier_from_payload(torch.load(path, weights_only=True), str(path))
    assert again.kind == "logit_adjusted" and again.selected == fitted.selected
    test = rng.normal(size=(9, len(COUNTS))).astype(np.float32)
    np.testing.assert_array_equal(again.logits(test), fitted.logits(test))


def test_other_payloads_carry_no_shift() -> None:
    """Kinds that do not shift keep the payload they had (so saved models keep their bytes)."""
    head = FittedClassifier("head", {"val_accuracy": 1.0}, None, 5, 5, "logits")
    assert "shift" not in classifier_payload(head)
    bad = {**classifier_payload(head), "shift": torch.zeros(3)}
    with pytest.raises(FeaturesError, match="not a saved classifier"):
        classifier_from_payload(bad, "x.pt")
