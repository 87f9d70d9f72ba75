"""Post-hoc logit adjustment (Menon et al. 2021, Eq. 9) by hand, and tau chosen on val."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from features.classifiers.logit_adjustment import (
    TAU_GRID,
    adjust_logits,
    choose_tau,
    log_label_prior,
)
from features.errors import FeaturesError

COUNTS = np.array([60, 25, 9, 3])


def adjusted_by_hand(logits: np.ndarray, counts: np.ndarray, tau: float) -> list[list[float]]:
    """Eq. 9's scores literally: f_y(x) - tau log(n_y / sum_j n_j)."""
    total = int(counts.sum())
    return [[f - tau * math.log(int(n) / total) for f, n in zip(row, counts, strict=True)]
            for row in logits.tolist()]


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.75])
def test_numpy_scores_match_eq9(tau: float) -> None:
    logits = np.random.default_rng(0).normal(size=(7, 4))
    adjusted = adjust_logits(logits, COUNTS, tau)
    assert isinstance(adjusted, np.ndarray) and adjusted.dtype == np.float64
    np.testing.assert_allclose(adjusted, adjusted_by_hand(logits, COUNTS, tau), rtol=1e-12)


def test_torch_in_torch_out_with_its_dtype_and_gradient() -> None:
    logits = torch.randn(5, 4, dtype=torch.float32, requires_grad=True,
                         generator=torch.Generator().manual_seed(0))
    adjusted = adjust_logits(logits, COUNTS, 1.0)
    assert isinstance(adjusted, torch.Tensor) and adjusted.dtype == torch.float32
    expected = adjusted_by_hand(logits.detach().double().numpy(), COUNTS, 1.0)
    # float32 arithmetic: a relative bound fails on a sum that lands near zero
    np.testing.assert_allclose(adjusted.detach().numpy(), expected, rtol=1e-6, atol=1e-6)
    adjusted.sum().backward()
    assert torch.equal(logits.grad, torch.ones(5, 4))


def test_the_adjustment_favours_rare_classes() -> None:
    """Equal logits predict the rarest class once the log prior is subtracted."""
    adjusted = adjust_logits(np.zeros((1, 4)), COUNTS, 1.0)
    assert int(adjusted.argmax()) == 3
    assert log_label_prior(COUNTS) == pytest.approx(np.log(COUNTS / COUNTS.sum()))


def test_val_picks_the_tau_that_undoes_the_prior() -> None:
    """Logits that carry the training prior (a CE model's) are fixed best near tau = 1."""
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 50)
    evidence = np.eye(4)[labels] * 1.0 + rng.normal(scale=0.8, size=(200, 4))
    biased = evidence + np.log(COUNTS / COUNTS.sum())  # the prior a CE model learns
    choice = choose_tau(biased, labels, COUNTS)
    assert set(choice.accuracies) == set(TAU_GRID)
    assert choice.accuracies[choice.tau] == choice.val_accuracy == max(choice.accuracies.values())
    assert 0.5 <= choice.tau <= 1.5
    assert choice.val_accuracy > choice.accuracies[0.0]


def test_ties_go_to_the_smaller_tau() -> None:
    logits = np.array([[5.0, 0.0, 0.0, 0.0], [0.0, 5.0, 0.0, 0.0]])
    choice = choose_tau(logits, np.array([0, 1]), COUNTS, tau_grid=(1.0, 0.5, 0.0))
    assert choice.tau == 0.0 and choice.val_accuracy == 1.0
    assert list(choice.accuracies) == [0.0, 0.5, 1.0]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: log_label_prior([3, 0, 2]), r"classes \[1\] have no training images"),
        (lambda: adjust_logits(np.zeros((2, 3)), COUNTS), r"expected \[N, 4\]"),
        (lambda: choose_tau(np.zeros((2, 4)), np.array([0, 1]), COUNTS, tau_grid=()), "tau_grid"),
        (lambda: choose_tau(np.zeros((2, 4)), np.array([0, 1]), COUNTS, tau_grid=(-1.0,)),
         "tau_grid"),
        (lambda: choose_tau(np.zeros((0, 4)), np.zeros(0, dtype=int), COUNTS), "no rows"),
        (lambda: choose_tau(np.zeros((2, 4)), np.array([0, 7]), COUNTS), "labels must lie"),
    ],
)
def test_bad_input_is_one_clear_error(call, message: str) -> None:
    with pytest.raises(FeaturesError, match=message):
        call()
