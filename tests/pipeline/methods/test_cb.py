"""``cb``: the class-balanced loss (Cui et al. 2019) against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import ConfigError, PipelineError
from pipeline.methods import build_method, build_options
from pipeline.methods.cb_loss import class_balanced_loss, effective_number_weights
from tests.pipeline.methods.baselines import (
    TOY_COUNTS,
    assert_trains,
    focal_by_hand,
    random_logits,
    toy_method,
    weights_by_hand,
)

COUNTS = [500, 120, 30, 8, 1]


def cb_softmax_by_hand(logits: torch.Tensor, labels: torch.Tensor, weights: list[float]) -> float:
    """mean_i -w_{y_i} log softmax(z_i)_{y_i}."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        p_y = math.exp(row[label]) / sum(math.exp(value) for value in row)
        total += -weights[label] * math.log(p_y)
    return total / len(labels)


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.99, 0.999, 0.9999])
def test_weights_are_inverse_effective_numbers_summing_to_c(beta: float) -> None:
    weights = effective_number_weights(torch.tensor(COUNTS), beta, "cb")
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx(weights_by_hand(COUNTS, beta), rel=1e-6)
    assert weights.sum().item() == pytest.approx(len(COUNTS), rel=1e-6)


def test_beta_zero_is_uniform_and_weights_grow_towards_the_tail() -> None:
    assert effective_number_weights(torch.tensor(COUNTS), 0.0, "cb").tolist() == [1.0] * 5
    weights = effective_number_weights(torch.tensor(COUNTS), 0.9999, "cb").tolist()
    assert weights == sorted(weights)


@pytest.mark.parametrize("beta", [0.9, 0.9999])
@pytest.mark.parametrize("seed", range(3))
def test_softmax_loss_matches_the_equation(seed: int, beta: float) -> None:
    logits, labels = random_logits(16, COUNTS, seed)
    weights = effective_number_weights(torch.tensor(COUNTS), beta, "cb")
    loss = class_balanced_loss(logits, labels, weights, "softmax")
    expected = cb_softmax_by_hand(logits, labels, weights.double().tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_loss_matches_the_equation(gamma: float) -> None:
    logits, labels = random_logits(16, COUNTS, 9)
    weights = effective_number_weights(torch.tensor(COUNTS), 0.999, "cb")
    loss = class_balanced_loss(logits, labels, weights, "focal", gamma)
    expected = focal_by_hand(logits, labels, gamma, weights.double().tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_unknown_base_loss_is_refused() -> None:
    logits, labels = random_logits(4, COUNTS, 0)
    with pytest.raises(ValueError, match="unknown base loss 'hinge'"):
        class_balanced_loss(logits, labels, torch.ones(5), "hinge")


def test_method_weighs_its_head_by_the_class_weights() -> None:
    method = toy_method("cb", {"beta": 0.99, "loss": "focal", "gamma": 1.0})
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    output = method.training_step(images, labels, torch.arange(6))
    plain = method.backbone(images).detach()
    weights = weights_by_hand(TOY_COUNTS, 0.99)
    assert torch.equal(output.logits, plain)
    assert method.class_weights.tolist() == pytest.approx(weights, rel=1e-6)
    assert output.loss.item() == pytest.approx(
        focal_by_hand(plain.double(), labels, 1.0, weights), rel=1e-5)


def test_options_and_refusals() -> None:
    options = build_options("cb", None)
    assert (options.beta, options.loss, options.gamma) == (0.9999, "softmax", 2.0)
    with pytest.raises(ConfigError, match="ClassBalancedOptions.beta must be < 1"):
        build_options("cb", {"beta": 1.0})
    with pytest.raises(ConfigError, match="ClassBalancedOptions.loss must be one of"):
        build_options("cb", {"loss": "sigmoid"})
    with pytest.raises(PipelineError, match=r"classes \[1\] have no training images"):
        build_method("cb", backbone="resnet20", in_channels=1, class_counts=[3, 0])


@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_training_smoke(loss: str) -> None:
    assert_trains(toy_method("cb", {"loss": loss}))
