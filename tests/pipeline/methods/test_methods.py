"""Methods: the Balanced Softmax equation, sampling flags, registry errors, the interface."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.methods import (
    METHODS,
    SAMPLINGS,
    Method,
    balanced_softmax_cross_entropy,
    build_method,
    method_options_fields,
)

COUNTS = [40, 12, 5, 2]


def build(kind: str, seed: int = 0) -> Method:
    return build_method(kind, backbone="resnet20", in_channels=1, class_counts=COUNTS, seed=seed)


def batch(size: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 8, 8, generator=generator)
    labels = torch.randint(0, len(COUNTS), (size,), generator=generator)
    return images, labels, torch.arange(size)


def balanced_softmax_by_hand(
    logits: torch.Tensor, labels: torch.Tensor, counts: list[int]
) -> float:
    """Ren et al. 2020, Eq. 4, literally: -log(n_y e^{eta_y} / sum_j n_j e^{eta_j}), averaged."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        numerator = counts[label] * math.exp(row[label])
        denominator = sum(n * math.exp(eta) for n, eta in zip(counts, row, strict=True))
        total += -math.log(numerator / denominator)
    return total / len(labels)


@pytest.mark.parametrize("seed", range(5))
def test_balanced_softmax_matches_the_equation(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(16, len(COUNTS), generator=generator, dtype=torch.float64) * 3
    labels = torch.randint(0, len(COUNTS), (16,), generator=generator)
    log_prior = torch.tensor(COUNTS, dtype=torch.float64).log()
    loss = balanced_softmax_cross_entropy(logits, labels, log_prior)
    assert loss.item() == pytest.approx(balanced_softmax_by_hand(logits, labels, COUNTS), rel=1e-12)


def test_bsce_trains_on_shifted_logits_and_predicts_plain_ones() -> None:
    method = build("bsce")
    images, labels, index = batch()
    output = method.training_step(images, labels, index)
    plain = method.backbone(images)
    assert torch.equal(output.logits, plain.detach())
    assert output.loss.item() == pytest.approx(
        balanced_softmax_by_hand(plain.detach().double(), labels, COUNTS), rel=1e-5
    )
    assert torch.equal(method.predict(images), plain)


def test_bsce_differs_from_ce_only_through_the_prior() -> None:
    ce, bsce = build("ce"), build("bsce")
    images, labels, index = batch()
    ce_loss = ce.training_step(images, labels, index).loss
    bsce_loss = bsce.training_step(images, labels, index).loss
    assert torch.equal(ce.backbone.fc.weight, bsce.backbone.fc.weight)
    assert not torch.isclose(ce_loss, bsce_loss)


def test_bsce_log_prior_is_a_buffer_that_follows_the_module() -> None:
    method = build("bsce")
    buffers = dict(method.named_buffers())
    assert torch.allclose(buffers["log_prior"], torch.tensor(COUNTS, dtype=torch.float32).log())
    assert "log_prior" in method.state_dict()
    assert method.to(torch.float64).log_prior.dtype == torch.float64


def test_bsce_refuses_an_empty_class() -> None:
    with pytest.raises(PipelineError, match=r"classes \[2\] have no training images"):
        build_method("bsce", backbone="resnet20", in_channels=1, class_counts=[3, 2, 0])


def test_ce_is_plain_cross_entropy() -> None:
    method = build("ce")
    images, labels, index = batch()
    output = method.training_step(images, labels, index)
    expected = torch.nn.functional.cross_entropy(method.backbone(images), labels)
    assert torch.allclose(output.loss, expected)
    assert not output.logits.requires_grad


def test_sampling_flags() -> None:
    assert METHODS["ce"].sampling == "instance"
    assert METHODS["bsce"].sampling == "instance"
    assert METHODS["cbs"].sampling == "class_balanced"
    assert all(method.sampling in SAMPLINGS for method in METHODS.values())
    assert build("cbs").sampling == "class_balanced"


def test_registry_names_match_class_names() -> None:
    assert sorted(METHODS) == sorted(
        ["bsce", "cbs", "ce", "paco", "gml_teacher", "gml_student", "bib", "mbib", "la",
         "ldam_drw", "focal", "cb"]
    )
    assert all(kind == method.name for kind, method in METHODS.items())


def test_embed_returns_pooled_features_and_head_logits() -> None:
    method = build("bsce").eval()
    images, _, _ = batch()
    embedding = method.embed(images)
    assert embedding.features.shape == (6, 64)
    assert embedding.logits.shape == (6, len(COUNTS))
    assert embedding.extra == {}
    assert torch.allclose(embedding.logits, method.predict(images))


def test_default_parameter_group_holds_every_trainable_parameter() -> None:
    method = build("ce")
    method.backbone.fc.bias.requires_grad_(False)
    (group,) = method.parameter_groups()
    assert len(group["params"]) == len(list(method.parameters())) - 1


def test_unknown_kind_names_the_closest() -> None:
    with pytest.raises(PipelineError, match="unknown method kind 'bcse'; did you mean 'bsce'"):
        build_method("bcse", backbone="resnet20", in_channels=1, class_counts=COUNTS)


def test_unknown_option_names_the_key() -> None:
    with pytest.raises(PipelineError, match=r"NoOptions\.tau is not an option; 'ce' takes no options"):
        build_method(
            "ce", backbone="resnet20", in_channels=1, class_counts=COUNTS, options={"tau": 1.0}
        )


def test_option_fields_of_the_first_methods_are_empty() -> None:
    assert all(method_options_fields(kind) == {} for kind in ("ce", "cbs", "bsce"))
    assert method_options_fields("paco")["alpha"] == 0.05
    with pytest.raises(PipelineError, match="valid: "):
        method_options_fields("paco2")


def test_class_counts_must_match_the_head() -> None:
    with pytest.raises(PipelineError, match="class_counts is empty"):
        build_method("ce", backbone="resnet20", in_channels=1, class_counts=[])
    backbone = build("ce").backbone
    with pytest.raises(PipelineError, match=r"shape \(3,\) but the backbone has 4 classes"):
        METHODS["ce"](backbone, torch.tensor([1, 2, 3]), METHODS["ce"].Options())


def test_seed_makes_construction_repeatable() -> None:
    first, second, other = build("bsce", seed=3), build("bsce", seed=3), build("bsce", seed=4)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.equal(first.backbone.fc.weight, other.backbone.fc.weight)
