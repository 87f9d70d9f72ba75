"""Tests of the classifiers trained on frozen bank features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from features.classifiers import (
    FittedClassifier,
    LinearHead,
    Probe,
    balanced_softmax_loss,
    fit_classifier,
)
from features.configs import CLASSIFIER_KINDS, ProbeConfig
from features.errors import FeaturesError
from features.metrics import per_class_accuracy

# `head` and `logit_adjusted` score stored logits: tests/features/test_logit_adjusted_kind.py
TRAINED_KINDS = tuple(kind for kind in CLASSIFIER_KINDS if kind not in ("head", "logit_adjusted"))
REBALANCING_KINDS = ("balanced_softmax", "cbs_linear", "crt", "lws", "tau_norm")
TAIL_CLASSES = [3, 4]
FAST = ProbeConfig(epochs=10, crt_epochs=10, lws_epochs=10, batch_size=64, seed=0)


@dataclasses.dataclass
class Synthetic:
    """Gaussian classes: long-tailed train, balanced val and test."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_counts: np.ndarray

    def fit(self, kind: str, config: ProbeConfig = FAST, **kwargs: object) -> FittedClassifier:
        return fit_classifier(
            kind,
            train_x=self.train_x,
            train_y=self.train_y,
            val_x=self.val_x,
            val_y=self.val_y,
            class_counts=self.class_counts,
            config=config,
            **kwargs,  # type: ignore[arg-type]
        )

    def test_per_class(self, classifier: FittedClassifier) -> np.ndarray:
        pred = classifier.logits(self.test_x).argmax(axis=1)
        return per_class_accuracy(pred, self.test_y, len(self.class_counts))


def make_synthetic(separation: float, seed: int = 0, dim: int = 8) -> Synthetic:
    rng = np.random.default_rng(seed)
    counts = np.array([400, 150, 50, 15, 5])
    means = separation * rng.normal(size=(len(counts), dim))

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(len(counts)), per_class)
        features = means[labels] + rng.normal(size=(len(labels), dim))
        return features.astype(np.float32), labels

    balanced = np.full(len(counts), 100)
    train, val, test = draw(counts), draw(balanced), draw(balanced)
    return Synthetic(*train, *val, *test, class_counts=counts)


@pytest.fixture(scope="module")
def separable() -> Synthetic:
    return make_synthetic(separation=3.0)


@pytest.fixture(scope="module")
def overlapping() -> Synthetic:
    """Classes overlap, so a plain linear classifier sacrifices the tail to the head."""
    return make_synthetic(separation=0.6)


@pytest.mark.parametrize("kind", TRAINED_KINDS)
def test_each_kind_beats_chance_clearly(separable: Synthetic, kind: str) -> None:
    classifier = separable.fit(kind)
    assert np.nanmean(separable.test_per_class(classifier)) > 0.6  # chance is 0.2
    assert classifier.kind == kind
    assert classifier.input_field == "features"


def test_head_returns_the_stored_logits(separable: Synthetic) -> None:
    rng = np.random.default_rng(1)

    def stored_logits(labels: np.ndarray) -> np.ndarray:
        return (4.0 * np.eye(5)[labels] + rng.normal(size=(len(labels), 5))).astype(np.float32)

    train_logits, val_logits = stored_logits(separable.train_y), stored_logits(separable.val_y)
    classifier = separable.fit("head", head_logits=(train_logits, val_logits))
    assert classifier.input_field == "logits"
    np.testing.assert_array_equal(classifier.logits(val_logits), val_logits)
    expected = float((val_logits.argmax(axis=1) == separable.val_y).mean())
    assert classifier.selected["val_accuracy"] == pytest.approx(expected)
    assert expected > 0.8


def test_head_without_stored_logits_is_an_error(separable: Synthetic) -> None:
    with pytest.raises(FeaturesError, match="logits"):
        separable.fit("head")


def test_head_logits_of_wrong_shape_is_an_error(separable: Synthetic) -> None:
    wrong = np.zeros((len(separable.val_y), 4), np.float32)
    right = np.zeros((len(separable.train_y), 5), np.float32)
    with pytest.raises(FeaturesError, match="val"):
        separable.fit("head", head_logits=(right, wrong))


@pytest.fixture(scope="module")
def overlapping_linear(overlapping: Synthetic) -> FittedClassifier:
    return overlapping.fit("linear")


@pytest.mark.parametrize("kind", REBALANCING_KINDS)
def test_rebalancing_raises_tail_accuracy_over_linear(
    overlapping: Synthetic, overlapping_linear: FittedClassifier, kind: str
) -> None:
    linear_tail = overlapping.test_per_class(overlapping_linear)[TAIL_CLASSES].mean()
    classifier = overlapping.fit(kind, base=overlapping_linear)
    tail = overlapping.test_per_class(classifier)[TAIL_CLASSES].mean()
    assert linear_tail < 0.2  # the imbalance does hurt the plain classifier
    assert tail > linear_tail + 0.15


def test_tau_zero_is_linear_without_bias(overlapping: Synthetic) -> None:
    linear = overlapping.fit("linear")
    tau_zero = overlapping.fit("tau_norm", dataclasses.replace(FAST, tau_grid=(0.0,)))
    assert tau_zero.selected["tau"] == 0.0
    bias = linear.model.head.bias.detach().numpy()
    np.testing.assert_allclose(
        tau_zero.logits(overlapping.test_x),
        linear.logits(overlapping.test_x) - bias,
        rtol=0,
        atol=1e-5,
    )


def test_tau_norm_divides_rows_by_their_norm_power(
    overlapping: Synthetic, overlapping_linear: FittedClassifier
) -> None:
    tau_norm = overlapping.fit("tau_norm", base=overlapping_linear)
    tau = tau_norm.selected["tau"]
    weight = overlapping_linear.model.head.weight.detach()
    expected = weight / weight.norm(dim=1, keepdim=True) ** tau
    torch.testing.assert_close(tau_norm.model.head.weight, expected)
    assert torch.count_nonzero(tau_norm.model.head.bias) == 0


def test_tau_ties_go_to_the_smaller_tau(overlapping: Synthetic) -> None:
    # Rows of equal norm: every tau rescales all logits alike, so every tau ties.
    weight = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator()), dim=1)
    probe = Probe(torch.zeros(8), torch.ones(8), LinearHead(weight, torch.zeros(5)))
    base = FittedClassifier("linear", {}, probe, num_classes=5, input_dim=8)
    config = dataclasses.replace(FAST, tau_grid=(1.5, 0.5, 1.0))
    assert overlapping.fit("tau_norm", config, base=base).selected["tau"] == 0.5


def test_lws_learns_only_the_scales(
    overlapping: Synthetic, overlapping_linear: FittedClassifier
) -> None:
    lws = overlapping.fit("lws", base=overlapping_linear)
    base_head = overlapping_linear.model.head
    assert torch.equal(lws.model.head.weight, base_head.weight.detach())
    assert torch.equal(lws.model.head.bias, base_head.bias.detach())
    scales = lws.model.head.scales.detach()
    assert not torch.allclose(scales, torch.ones_like(scales))
    # Tail classes get larger scales than the head class.
    assert scales[TAIL_CLASSES].min() > scales[0]


def test_lws_and_tau_norm_without_base_fit_the_same_linear(
    overlapping: Synthetic, overlapping_linear: FittedClassifier
) -> None:
    with_base = overlapping.fit("tau_norm", base=overlapping_linear)
    without = overlapping.fit("tau_norm")
    np.testing.assert_array_equal(
        with_base.logits(overlapping.test_x), without.logits(overlapping.test_x)
    )


def test_base_must_be_linear(overlapping: Synthetic) -> None:
    cosine = overlapping.fit("cosine")
    with pytest.raises(FeaturesError, match="linear"):
        overlapping.fit("lws", base=cosine)


def test_balanced_softmax_loss_matches_its_equation() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(32, 6, generator=generator, dtype=torch.float64)
    labels = torch.randint(6, (32,), generator=generator)
    counts = torch.tensor([500, 120, 40, 9, 3, 1])
    # Ren et al. 2020, Eq. 4: -log( n_y exp(z_y) / sum_j n_j exp(z_j) ), averaged.
    z, n = logits.numpy(), counts.numpy().astype(np.float64)
    weighted = n * np.exp(z)
    expected = -np.log(weighted[np.arange(32), labels.numpy()] / weighted.sum(axis=1)).mean()
    assert balanced_softmax_loss(logits, labels, counts).item() == pytest.approx(expected)


@pytest.mark.parametrize("kind", TRAINED_KINDS)
def test_fits_are_deterministic(overlapping: Synthetic, kind: str) -> None:
    config = dataclasses.replace(FAST, epochs=3, crt_epochs=3, lws_epochs=3)
    first = overlapping.fit(kind, config)
    second = overlapping.fit(kind, config)
    np.testing.assert_array_equal(
        first.logits(overlapping.test_x), second.logits(overlapping.test_x)
    )
    assert first.selected == second.selected


def test_seed_changes_the_fit(overlapping: Synthetic) -> None:
    first = overlapping.fit("linear", dataclasses.replace(FAST, epochs=2))
    other = overlapping.fit("linear", dataclasses.replace(FAST, epochs=2, seed=1))
    assert not np.array_equal(first.logits(overlapping.test_x), other.logits(overlapping.test_x))


def test_selected_epoch_is_the_kept_state(overlapping: Synthetic) -> None:
    classifier = overlapping.fit("balanced_softmax")
    assert 1 <= classifier.selected["epoch"] <= FAST.epochs
    val_accuracy = float(
        (classifier.logits(overlapping.val_x).argmax(axis=1) == overlapping.val_y).mean()
    )
    assert classifier.selected["val_accuracy"] == pytest.approx(val_accuracy)


def test_standardisation_uses_train_statistics_only(overlapping: Synthetic) -> None:
    classifier = overlapping.fit("linear", dataclasses.replace(FAST, epochs=1))
    shifted = fit_classifier(
        "linear",
        train_x=overlapping.train_x,
        train_y=overlapping.train_y,
        val_x=overlapping.val_x + 100.0,
        val_y=overlapping.val_y,
        class_counts=overlapping.class_counts,
        config=dataclasses.replace(FAST, epochs=1),
    )
    np.testing.assert_allclose(
        classifier.model.mean.numpy(), overlapping.train_x.mean(axis=0), atol=1e-5
    )
    torch.testing.assert_close(classifier.model.mean, shifted.model.mean)
    torch.testing.assert_close(classifier.model.std, shifted.model.std)


def test_logits_shape_and_dtype(separable: Synthetic) -> None:
    classifier = separable.fit("cosine", dataclasses.replace(FAST, epochs=1))
    logits = classifier.logits(separable.test_x.astype(np.float64))
    assert logits.dtype == np.float32 and logits.shape == (len(separable.test_x), 5)
    assert classifier.logits(np.zeros((0, 8))).shape == (0, 5)
    with pytest.raises(FeaturesError, match="cosine"):
        classifier.logits(np.zeros((3, 7)))


def test_unknown_kind_lists_the_valid_kinds(separable: Synthetic) -> None:
    with pytest.raises(FeaturesError, match="unknown classifier kind 'svm'") as error:
        separable.fit("svm")
    for kind in CLASSIFIER_KINDS:
        assert kind in str(error.value)


@pytest.mark.parametrize(
    "change",
    [
        {"val_x": np.zeros((3, 7), np.float32), "val_y": np.zeros(3, np.int64)},
        {"train_y": np.full(5, 9)},
        {"class_counts": np.array([10])},
        {"train_x": np.full((5, 8), np.nan, np.float32)},
    ],
)
def test_bad_inputs_are_features_errors(change: dict) -> None:
    arrays = {
        "train_x": np.zeros((5, 8), np.float32),
        "train_y": np.arange(5) % 2,
        "val_x": np.zeros((3, 8), np.float32),
        "val_y": np.arange(3) % 2,
        "class_counts": np.array([3, 2]),
    }
    with pytest.raises(FeaturesError):
        fit_classifier("linear", config=FAST, **(arrays | change))


@pytest.mark.parametrize(
    "override", [{"epochs": 0}, {"lr": 0.0}, {"tau_grid": ()}, {"momentum": 1.0}]
)
def test_probe_config_validates(override: dict) -> None:
    with pytest.raises(FeaturesError):
        ProbeConfig(**override)


def test_default_tau_grid() -> None:
    assert ProbeConfig().tau_grid == tuple(round(0.1 * step, 1) for step in range(21))
    assert ProbeConfig().tau_grid[-1] == 2.0
