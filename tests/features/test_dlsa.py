"""Tests of the DLSA cascade: routing, cluster-aided classifiers, reports and files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from features.classifiers import FittedClassifier, fit_classifier
from features.configs import CascadeConfig, FlowTrainConfig, ProbeConfig
from features.dlsa import (
    Cascade,
    ClusterAidedClassifier,
    cluster_prior,
    filter_report,
    fit_cascade,
    routing_threshold,
)
from features.dlsa_model import BankProvenance, DLSAModel, save_dlsa_model
from features.errors import FeaturesError

PROVENANCE = BankProvenance("ce", "resnet20", "synthetic", "c" * 64)


def save_cascade(cascade: Cascade, path: Path) -> None:
    """The cascade alone in a DLSA model file (no base classifiers)."""
    save_dlsa_model(DLSAModel(cascade=cascade, bases={}, bank=PROVENANCE), path)

HEAD, TAIL = 3, 10
# "likelihood" selection: the official "purity" rule counts clusters of > 10 val rows, which
# on 260 val rows is noise (it keeps epoch 2 of 40 here, separation 0.25).
FLOW = FlowTrainConfig(num_clusters=20, epochs=30, batch_size=64, selection="likelihood")
FULL = CascadeConfig(flow=FLOW, classifier_epochs=30, classifier_lr=0.05, min_val_rows=10)
TINY = CascadeConfig(
    flow=dataclasses.replace(FLOW, num_clusters=8, epochs=3),
    classifier_epochs=3,
    classifier_lr=0.05,
)


@dataclasses.dataclass
class Bank:
    """A long-tailed synthetic bank: head classes overlap near the origin; each tail class
    is a tight cluster of its own, far from the head and from the other tail classes."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    counts: np.ndarray

    def fit(self, base: FittedClassifier, config: CascadeConfig, **kwargs: object) -> Cascade:
        return fit_cascade(
            self.train_x,
            self.train_y,
            self.val_x,
            self.val_y,
            self.counts,
            base,
            config,
            **kwargs,  # type: ignore[arg-type]
        )

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            "train": (self.train_x, self.train_y),
            "val": (self.val_x, self.val_y),
            "test": (self.test_x, self.test_y),
        }


@pytest.fixture(scope="module")
def bank() -> Bank:
    rng = np.random.default_rng(0)
    dim = 8
    counts = np.array([120] * HEAD + [10] * TAIL)
    directions = rng.normal(size=(TAIL, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    means = np.concatenate([rng.normal(size=(HEAD, dim)), 6.0 * directions])
    spread = np.array([1.0] * HEAD + [0.25] * TAIL)

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(len(counts)), per_class)
        noise = spread[labels, None] * rng.normal(size=(len(labels), dim))
        return (means[labels] + noise).astype(np.float32), labels

    balanced = np.full(len(counts), 20)
    return Bank(*draw(counts), *draw(balanced), *draw(balanced), counts=counts)


@pytest.fixture(scope="module")
def base(bank: Bank) -> FittedClassifier:
    return fit_classifier(
        "balanced_softmax",
        train_x=bank.train_x,
        train_y=bank.train_y,
        val_x=bank.val_x,
        val_y=bank.val_y,
        class_counts=bank.counts,
        config=ProbeConfig(epochs=5),
    )


@pytest.fixture(scope="module")
def cascade(bank: Bank, base: FittedClassifier) -> Cascade:
    # Module fixtures run before the suite's function-scoped single-thread fixture.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return bank.fit(base, FULL)
    finally:
        torch.set_num_threads(threads)


def test_first_filter_separates_tail_from_head_far_above_chance(
    bank: Bank, cascade: Cascade
) -> None:
    first = filter_report(cascade, bank.splits(), bank.counts)[0]
    print(
        "first filter separation accuracy (train / val / test):",
        first.separation_accuracy,
        "chance:",
        first.tail_share_seen,
    )
    chance = first.tail_share_seen["train"]
    assert chance == pytest.approx(100 / 460)
    # 138 rows are routed and only 100 are tail, so 0.72 is the ceiling on train.
    assert first.separation_accuracy["train"] > 2.5 * chance
    for split in ("val", "test"):  # balanced splits: chance is 10 / 13
        assert first.separation_accuracy[split] > 0.9


def test_each_filter_routes_the_configured_share_of_the_rows_it_sees(
    bank: Bank, cascade: Cascade
) -> None:
    assignment = cascade.route(bank.train_x).assignment
    remaining = len(bank.train_y)
    for index in range(FULL.num_filters):
        routed = int((assignment == index).sum())
        assert abs(routed - FULL.routed_share * remaining) <= 1
        remaining -= routed
    assert int((assignment == -1).sum()) == remaining
    reports = filter_report(cascade, bank.splits(), bank.counts)
    for report in reports:
        assert report.routed_share["train"] == pytest.approx(
            FULL.routed_share * report.seen_share["train"], abs=1.5 / len(bank.train_y)
        )
        assert sum(report.cluster_sizes) == round(report.seen_share["train"] * len(bank.train_y))


def test_predict_takes_cascade_logits_for_routed_rows_and_base_logits_for_the_rest(
    bank: Bank, cascade: Cascade, base: FittedClassifier
) -> None:
    base_logits = base.logits(bank.test_x)
    routed = cascade.route(bank.test_x)
    combined = cascade.predict(bank.test_x, base_logits)
    mask = routed.assignment >= 0
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(combined[mask], routed.logits[mask])
    np.testing.assert_array_equal(combined[~mask], base_logits[~mask])
    with pytest.raises(FeaturesError, match="base_logits has"):
        cascade.predict(bank.test_x, base_logits[:5])


def test_same_threshold_routes_val_and_test(bank: Bank, cascade: Cascade) -> None:
    """Routing of a row does not depend on the other rows of its split."""
    whole = cascade.route(bank.test_x).assignment
    parts = np.concatenate(
        [cascade.route(bank.test_x[start : start + 50]).assignment for start in range(0, 260, 50)]
    )
    np.testing.assert_array_equal(whole, parts)


def test_routing_threshold_is_the_training_quantile() -> None:
    likelihood = torch.randn(101, generator=torch.Generator().manual_seed(0))
    for share in (0.01, 0.3, 0.5, 0.99):
        threshold = routing_threshold(likelihood, share)
        assert int((likelihood >= threshold).sum()) == max(1, round(share * 101))
    with pytest.raises(FeaturesError):
        routing_threshold(torch.zeros(0), 0.3)


def test_cluster_prior_is_the_normalised_class_histogram_of_each_cluster() -> None:
    clusters = torch.tensor([0, 0, 0, 2, 2])
    labels = torch.tensor([1, 1, 0, 2, 1])
    prior = cluster_prior(clusters, labels, 3, 3)
    expected = torch.tensor([[1 / 3, 2 / 3, 0.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    torch.testing.assert_close(prior, expected)


def test_cluster_aided_classifier_is_fc_of_features_and_latent_plus_fc_of_prior() -> None:
    generator = torch.Generator().manual_seed(0)
    prior = torch.softmax(torch.randn(4, 3, generator=generator), dim=1)
    mean, std = torch.randn(5, generator=generator), torch.rand(5, generator=generator) + 0.5
    classifier = ClusterAidedClassifier(5, 2, prior, mean, std, seed=0)
    x, z = torch.randn(6, 5, generator=generator), torch.randn(6, 2, generator=generator)
    cluster = torch.tensor([0, 1, 2, 3, 3, 1])
    a, b = classifier.feature_fc, classifier.prior_fc
    expected = (
        torch.cat([(x - mean) / std, z], 1) @ a.weight.T
        + a.bias
        + prior[cluster] @ b.weight.T
        + b.bias
    )
    torch.testing.assert_close(classifier(x, z, cluster), expected)


def test_cascade_classifier_priors_come_from_the_routed_training_rows(
    bank: Bank, cascade: Cascade
) -> None:
    first = cascade.classifiers[0].cluster_prior
    assert first.shape == (FLOW.num_clusters, len(bank.counts))
    sums = first.sum(dim=1)
    assert bool(((sums - 1).abs() < 1e-5).logical_or(sums == 0).all())


def test_same_seed_same_cascade_bytes(bank: Bank, base: FittedClassifier, tmp_path: Path) -> None:
    first, second = bank.fit(base, TINY), bank.fit(base, TINY)
    save_cascade(first, tmp_path / "a.pt")
    save_cascade(second, tmp_path / "b.pt")
    save_cascade(first, tmp_path / "c.pt")
    data = (tmp_path / "a.pt").read_bytes()
    assert data == (tmp_path / "b.pt").read_bytes() == (tmp_path / "c.pt").read_bytes()
    other = bank.fit(base, dataclasses.replace(TINY, seed=1))
    save_cascade(other, tmp_path / "d.pt")
    assert (tmp_path / "d.pt").read_bytes() != data


def test_check_bank_names_the_bank_on_mismatch(cascade: Cascade) -> None:
    cascade.check_bank(cascade.dim, cascade.num_classes, "banks/ce.h5")
    with pytest.raises(FeaturesError, match=r"banks/ce.h5: bank has 9 features and 13 classes"):
        cascade.check_bank(9, cascade.num_classes, "banks/ce.h5")
    with pytest.raises(FeaturesError, match="banks/ce.h5"):
        cascade.check_bank(cascade.dim, 7, "banks/ce.h5")


def test_base_of_other_classes_is_an_error(bank: Bank, base: FittedClassifier) -> None:
    wrong = dataclasses.replace(base, num_classes=4)
    with pytest.raises(FeaturesError, match="base classifier"):
        bank.fit(wrong, TINY)


def test_checkpoints_resume_to_the_same_cascade(
    bank: Bank, base: FittedClassifier, tmp_path: Path
) -> None:
    plain = bank.fit(base, TINY)
    first = bank.fit(base, TINY, checkpoint_dir=tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "filter0.pt",
        "filter1.pt",
        "filter2.pt",
    ]
    resumed = bank.fit(base, TINY, checkpoint_dir=tmp_path / "ckpt")
    for cascade in (first, resumed):
        save_cascade(cascade, tmp_path / "x.pt")
        save_cascade(plain, tmp_path / "y.pt")
        assert (tmp_path / "x.pt").read_bytes() == (tmp_path / "y.pt").read_bytes()


@pytest.mark.parametrize(
    "change",
    [
        {"num_filters": 1},
        {"num_filters": 2, "routed_share": 0.5},
        {"latent": "feature"},
        {"flow": dataclasses.replace(TINY.flow, num_clusters=3)},
        {"flow": dataclasses.replace(TINY.flow, weighted_mle=False)},
        {"flow": dataclasses.replace(TINY.flow, use_balance=False, use_purity=False)},
    ],
)
def test_ablations_run(bank: Bank, base: FittedClassifier, change: dict[str, object]) -> None:
    config = dataclasses.replace(TINY, **change)
    cascade = bank.fit(base, config)
    assert len(cascade.filters) == config.num_filters
    assert cascade.filters[0].num_clusters == config.flow.num_clusters
    assignment = cascade.route(bank.train_x).assignment
    expected = round(config.routed_share * len(bank.train_y))
    assert abs(int((assignment == 0).sum()) - expected) <= 1
    assert set(np.unique(assignment)) <= set(range(-1, config.num_filters))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"routed_share": 0.0}, "CascadeConfig.routed_share must be > 0"),
        ({"routed_share": 1.0}, "CascadeConfig.routed_share must be < 1"),
        ({"num_filters": 0}, "num_filters must be >= 1"),
        ({"latent": "z"}, "CascadeConfig.latent must be one of 'flow', 'feature', got 'z'"),
    ],
)
def test_config_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(FeaturesError, match=message):
        dataclasses.replace(TINY, **change)


def test_too_many_filters_for_the_rows_is_an_error(bank: Bank, base: FittedClassifier) -> None:
    config = dataclasses.replace(TINY, num_filters=40, routed_share=0.9)
    with pytest.raises(FeaturesError, match="training rows remain"):
        bank.fit(base, config)
