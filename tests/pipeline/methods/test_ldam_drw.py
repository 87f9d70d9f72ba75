"""``ldam_drw``: LDAM margins and loss (Cao et al. 2019) by hand, and deferred re-weighting
switched on by the engine's epoch hook."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import ConfigError, PipelineError
from pipeline.methods import build_method, build_options
from pipeline.methods.ldam_drw import drw_first_epoch
from pipeline.methods.ldam_loss import ldam_loss, ldam_margins
from tests.pipeline.methods.baselines import (
    TOY_COUNTS,
    assert_trains,
    random_logits,
    toy_method,
    train_toy,
    weights_by_hand,
)

COUNTS = [500, 120, 30, 8, 1]


def margins_by_hand(counts: list[int], max_margin: float) -> list[float]:
    """Delta_j = C / n_j^(1/4) with C chosen so that max_j Delta_j = max_margin."""
    constant = max_margin * min(counts) ** 0.25
    return [constant / n**0.25 for n in counts]


def ldam_by_hand(
    logits: torch.Tensor,
    labels: torch.Tensor,
    margins: list[float],
    scale: float,
    weights: list[float] | None = None,
) -> float:
    """-log(e^{s(z_y - D_y)} / (e^{s(z_y - D_y)} + sum_{j != y} e^{s z_j})); weighted mean."""
    total, weight_sum = 0.0, 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        target = math.exp(scale * (row[label] - margins[label]))
        others = sum(math.exp(scale * z) for j, z in enumerate(row) if j != label)
        weight = 1.0 if weights is None else weights[label]
        total += -weight * math.log(target / (target + others))
        weight_sum += weight
    return total / weight_sum


@pytest.mark.parametrize("max_margin", [0.0, 0.5, 1.0])
def test_margins_follow_the_quarter_power_law(max_margin: float) -> None:
    margins = ldam_margins(torch.tensor(COUNTS), max_margin, "ldam_drw")
    assert margins.tolist() == pytest.approx(margins_by_hand(COUNTS, max_margin), rel=1e-6)
    assert margins.max().item() == pytest.approx(max_margin)


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_the_equation(seed: int, scale: float) -> None:
    logits, labels = random_logits(16, COUNTS, seed, scale=0.5)  # cosines lie in [-1, 1]
    margins = ldam_margins(torch.tensor(COUNTS), 0.5, "ldam_drw")
    expected = ldam_by_hand(logits, labels, margins.double().tolist(), scale)
    assert ldam_loss(logits, labels, margins, scale).item() == pytest.approx(expected, rel=1e-9)


def test_weighted_loss_is_the_weighted_mean() -> None:
    logits, labels = random_logits(16, COUNTS, 3, scale=0.5)
    margins = ldam_margins(torch.tensor(COUNTS), 0.5, "ldam_drw")
    weights = torch.tensor(weights_by_hand(COUNTS, 0.9999), dtype=torch.float64)
    loss = ldam_loss(logits, labels, margins, 30.0, weights)
    expected = ldam_by_hand(logits, labels, margins.double().tolist(), 30.0, weights.tolist())
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_zero_margin_is_scaled_cross_entropy() -> None:
    logits, labels = random_logits(8, COUNTS, 1, scale=0.5)
    loss = ldam_loss(logits, labels, torch.zeros(5), 30.0)
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(30.0 * logits, labels))


@pytest.mark.parametrize(("epochs", "start", "first"),
                         [(200, 0.8, 160), (30, 0.8, 24), (31, 0.8, 25), (10, 0.0, 0),
                          (10, 1.0, 10), (3, 0.5, 2)])
def test_drw_starts_at_the_share_of_the_epochs(epochs: int, start: float, first: int) -> None:
    assert drw_first_epoch(epochs, start) == first


def test_epoch_hook_switches_the_class_weights_on() -> None:
    method = toy_method("ldam_drw")
    assert not method.reweighting
    method.before_epoch(159, 200)
    assert not method.reweighting
    method.before_epoch(160, 200)
    assert method.reweighting
    assert toy_method("ldam_drw", {"drw_start": 0.0}).reweighting


@pytest.mark.parametrize("reweighting", [False, True])
def test_method_loss_is_ldam_on_the_cosine_head(reweighting: bool) -> None:
    method = toy_method("ldam_drw", {"drw_start": 0.5})
    method.before_epoch(1 if reweighting else 0, 2)
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    output = method.training_step(images, labels, torch.arange(6))
    features = method.pooled_features(images)
    cosines = torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(
        method.classifier.weight, dim=1).T
    weights = weights_by_hand(TOY_COUNTS, 0.9999) if reweighting else None
    expected = ldam_by_hand(cosines.detach().double(), labels,
                            margins_by_hand(TOY_COUNTS, 0.5), 30.0, weights)
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(output.logits, 30.0 * cosines.detach(), atol=1e-5)
    assert torch.allclose(method.predict(images), 30.0 * cosines, atol=1e-5)
    assert method.embed(images).logits.shape == (6, 3)


def test_cosine_head_replaces_the_linear_head_in_the_optimiser() -> None:
    method = toy_method("ldam_drw")
    (group,) = method.parameter_groups()
    grouped = {id(parameter) for parameter in group["params"]}
    assert id(method.classifier.weight) in grouped
    assert not grouped & {id(parameter) for parameter in method.backbone.fc.parameters()}
    linear = toy_method("ldam_drw", {"cosine_head": False, "scale": 1.0})
    assert linear.classifier is None
    images = torch.randn(2, 1, 8, 8)
    assert torch.equal(linear.predict(images), linear.backbone(images))


def test_state_dict_holds_no_derived_buffers() -> None:
    keys = set(toy_method("ldam_drw").state_dict())
    assert "classifier.weight" in keys and not keys & {"margins", "drw_weights"}


def test_options_and_refusals() -> None:
    options = build_options("ldam_drw", None)
    assert (options.max_margin, options.scale, options.drw_start, options.beta) == (
        0.5, 30.0, 0.8, 0.9999)
    with pytest.raises(ConfigError, match="LDAMDRWOptions.drw_start must be <= 1"):
        build_options("ldam_drw", {"drw_start": 1.5})
    with pytest.raises(ConfigError, match="LDAMDRWOptions.beta must be < 1"):
        build_options("ldam_drw", {"beta": 1.0})
    with pytest.raises(PipelineError, match=r"classes \[1\] have no training images"):
        build_method("ldam_drw", backbone="resnet20", in_channels=1, class_counts=[3, 0])


def test_the_engine_passes_the_epoch_so_drw_starts_mid_run() -> None:
    method = toy_method("ldam_drw", {"drw_start": 0.5})
    seen: list[bool] = []
    original = method.training_step

    def spy(*args: torch.Tensor):
        seen.append(method.reweighting)
        return original(*args)

    method.training_step = spy  # type: ignore[method-assign]
    train_toy(method, epochs=2)
    steps = len(seen) // 2
    assert seen == [False] * steps + [True] * steps


def test_training_smoke() -> None:
    assert_trains(toy_method("ldam_drw"))
