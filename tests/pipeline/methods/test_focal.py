"""``focal``: the focal loss (Lin et al. 2017, Eq. 4 and 5) against a hand computation."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import ConfigError, PipelineError
from pipeline.methods import build_method, build_options
from pipeline.methods.focal_loss import focal_loss, focal_terms
from tests.pipeline.methods.baselines import (
    TOY_COUNTS,
    assert_trains,
    focal_by_hand,
    random_logits,
    toy_method,
)

COUNTS = [50, 20, 7, 3, 1]


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_eq4(seed: int, gamma: float) -> None:
    logits, labels = random_logits(16, COUNTS, seed)
    assert focal_loss(logits, labels, gamma).item() == pytest.approx(
        focal_by_hand(logits, labels, gamma), rel=1e-10)


def test_alpha_weights_follow_eq5() -> None:
    logits, labels = random_logits(16, COUNTS, 4)
    alpha = [0.1, 0.2, 0.5, 1.0, 2.0]
    loss = focal_loss(logits, labels, 2.0, torch.tensor(alpha, dtype=torch.float64))
    assert loss.item() == pytest.approx(focal_by_hand(logits, labels, 2.0, alpha), rel=1e-10)


def test_gamma_zero_is_cross_entropy_and_confident_samples_keep_finite_gradients() -> None:
    logits, labels = random_logits(16, COUNTS, 5)
    assert torch.allclose(focal_loss(logits, labels, 0.0),
                          torch.nn.functional.cross_entropy(logits, labels))
    # p_t rounds to exactly 1: the loss is 0 and no gradient is NaN, even for gamma < 1
    certain = torch.tensor([[200.0, 0.0, 0.0]], requires_grad=True)
    terms = focal_terms(certain, torch.tensor([0]), 0.5)
    terms.sum().backward()
    assert terms.item() == 0.0 and torch.isfinite(certain.grad).all()


def test_method_loss_is_the_focal_loss_of_the_head() -> None:
    alpha = [0.25, 0.5, 1.0]
    method = toy_method("focal", {"gamma": 1.0, "alpha": alpha})
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    output = method.training_step(images, labels, torch.arange(6))
    plain = method.backbone(images).detach()
    assert torch.equal(output.logits, plain)
    assert output.loss.item() == pytest.approx(
        focal_by_hand(plain.double(), labels, 1.0, alpha), rel=1e-5)


def test_options_and_refusals() -> None:
    options = build_options("focal", None)
    assert (options.gamma, options.alpha) == (2.0, ())
    assert build_options("focal", {"alpha": [1, 0.5]}).alpha == (1, 0.5)
    with pytest.raises(ConfigError, match="FocalOptions.gamma must be >= 0"):
        build_options("focal", {"gamma": -1.0})
    with pytest.raises(ConfigError, match="FocalOptions.alpha items must be >= 0"):
        build_options("focal", {"alpha": [1.0, -1.0]})
    with pytest.raises(PipelineError, match="alpha lists 2 weights but there are 3 classes"):
        build_method("focal", backbone="resnet20", in_channels=1, class_counts=TOY_COUNTS,
                     options={"alpha": [1.0, 2.0]})


def test_training_smoke() -> None:
    assert_trains(toy_method("focal"))
