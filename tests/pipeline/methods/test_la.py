"""``la``: the logit-adjusted loss (Menon et al. 2021, Eq. 10) against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import ConfigError, PipelineError
from pipeline.methods import build_method, build_options
from pipeline.methods.losses import balanced_softmax_cross_entropy, logit_adjusted_cross_entropy
from tests.pipeline.methods.baselines import TOY_COUNTS, assert_trains, random_logits, toy_method

COUNTS = [50, 20, 7, 3, 1]


def logit_adjusted_by_hand(
    logits: torch.Tensor, labels: torch.Tensor, counts: list[int], tau: float
) -> float:
    """Eq. 10 literally: -log(e^{f_y + tau log pi_y} / sum_y' e^{f_y' + tau log pi_y'})."""
    priors = [n / sum(counts) for n in counts]
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        adjusted = [f + tau * math.log(pi) for f, pi in zip(row, priors, strict=True)]
        total += -math.log(math.exp(adjusted[label]) / sum(math.exp(a) for a in adjusted))
    return total / len(labels)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_eq10(seed: int, tau: float) -> None:
    logits, labels = random_logits(16, COUNTS, seed)
    log_prior = torch.tensor(COUNTS, dtype=torch.float64).log() - math.log(sum(COUNTS))
    loss = logit_adjusted_cross_entropy(logits, labels, log_prior, tau)
    assert loss.item() == pytest.approx(logit_adjusted_by_hand(logits, labels, COUNTS, tau),
                                        rel=1e-12)


def test_tau_one_is_balanced_softmax_and_tau_zero_cross_entropy() -> None:
    logits, labels = random_logits(16, COUNTS, 7)
    log_counts = torch.tensor(COUNTS, dtype=torch.float64).log()
    log_prior = log_counts - math.log(sum(COUNTS))
    assert torch.allclose(logit_adjusted_cross_entropy(logits, labels, log_prior, 1.0),
                          balanced_softmax_cross_entropy(logits, labels, log_counts))
    assert torch.allclose(logit_adjusted_cross_entropy(logits, labels, log_prior, 0.0),
                          torch.nn.functional.cross_entropy(logits, labels))


def test_method_trains_on_adjusted_logits_and_predicts_plain_ones() -> None:
    method = toy_method("la", {"tau": 1.5})
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    output = method.training_step(images, labels, torch.arange(6))
    plain = method.backbone(images).detach()
    assert torch.equal(output.logits, plain)
    assert torch.equal(method.predict(images), method.backbone(images))
    assert output.loss.item() == pytest.approx(
        logit_adjusted_by_hand(plain.double(), labels, TOY_COUNTS, 1.5), rel=1e-5)
    frequencies = torch.tensor(TOY_COUNTS, dtype=torch.float32) / sum(TOY_COUNTS)
    assert torch.allclose(method.log_prior, frequencies.log())


def test_options_and_refusals() -> None:
    assert build_options("la", None).tau == 1.0
    with pytest.raises(ConfigError, match="LogitAdjustedOptions.tau must be >= 0"):
        build_options("la", {"tau": -1.0})
    with pytest.raises(PipelineError, match=r"classes \[1\] have no training images"):
        build_method("la", backbone="resnet20", in_channels=1, class_counts=[3, 0])


def test_training_smoke() -> None:
    assert_trains(toy_method("la"))
