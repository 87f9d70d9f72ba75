"""Tests of the DLSA cascade and model: routing, priors, cluster-aided classifiers, remainder
classifiers, the val gate, reports and files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import features.dlsa.fit as dlsa_fit
from features.bank.rows import as_rows
from features.configs import CascadeConfig, FlowTrainConfig, ProbeConfig
from features.dlsa.cascade import (
    Cascade,
    RoutedPrediction,
    cluster_prior,
    fit_cascade,
    routing_threshold,
)
from features.dlsa.classifier import ClusterAidedClassifier, LinearMap, head_map
from features.dlsa.fit import (
    GateReport,
    choose_gates,
    fit_dlsa,
    holm_rejected,
    sign_test,
    split_val,
)
from features.dlsa.io import save_dlsa_model
from features.dlsa.model import BankProvenance, DLSAModel
from features.dlsa.report import filter_report
from features.dlsa.training import evaluate_flow
from features.errors import FeaturesError

PROVENANCE = BankProvenance("ce", "resnet20", "synthetic", "c" * 64)
PROBE = ProbeConfig(epochs=5)

HEAD, TAIL = 3, 10
# "likelihood" selection: the official "purity" rule counts clusters of > 10 val rows, which
# on 260 val rows is noise (it keeps epoch 2 of 40 here, separation 0.25). lr 0.05 per unit of
# likelihood weight: 460 rows make 240 steps in 30 epochs, too few at the paper's 0.01.
FLOW = FlowTrainConfig(num_clusters=20, epochs=30, batch_size=64, lr=0.05,
                       selection="likelihood")
FULL = CascadeConfig(flow=FLOW, classifier_epochs=30, classifier_lr=0.05, min_val_rows=10)
TINY = CascadeConfig(
    flow=dataclasses.replace(FLOW, num_clusters=8, epochs=3),
    classifier_epochs=3,
    classifier_lr=0.05,
)


def model_of(cascade: Cascade) -> DLSAModel:
    """The cascade alone as a DLSA model (no base classifiers)."""
    return DLSAModel(cascade=cascade, bases={}, remainders={}, gates={}, bank=PROVENANCE)


def save_cascade(cascade: Cascade, path: Path) -> None:
    save_dlsa_model(model_of(cascade), path)


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

    def fit(self, config: CascadeConfig, **kwargs: object) -> Cascade:
        return self.fit_all(config, **kwargs)[0]

    def fit_all(
        self, config: CascadeConfig, **kwargs: object
    ) -> tuple[Cascade, list[np.ndarray], list[np.ndarray]]:
        return fit_cascade(self.train_x, self.train_y, self.val_x, self.val_y, self.counts,
                           config, **kwargs)  # type: ignore[arg-type]

    def splits(self) -> dict[str, tuple[np.ndarray, np.ndarray, None]]:
        return {
            "train": (self.train_x, self.train_y, None),
            "val": (self.val_x, self.val_y, None),
            "test": (self.test_x, self.test_y, None),
        }


def long_tailed_bank(seed: int = 0) -> Bank:
    rng = np.random.default_rng(seed)
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
def bank() -> Bank:
    return long_tailed_bank()


def _one_thread(fit):  # type: ignore[no-untyped-def]
    # Module fixtures run before the suite's function-scoped single-thread fixture.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit()
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fitted(bank: Bank) -> tuple[Cascade, list[np.ndarray], list[np.ndarray]]:
    return _one_thread(lambda: bank.fit_all(FULL))


@pytest.fixture(scope="module")
def cascade(fitted: tuple[Cascade, list[np.ndarray], list[np.ndarray]]) -> Cascade:
    return fitted[0]


@pytest.fixture(scope="module")
def dlsa(bank: Bank) -> tuple[DLSAModel, GateReport]:
    return _one_thread(lambda: fit_dlsa(
        (bank.train_x, bank.train_y, None), (bank.val_x, bank.val_y, None), bank.counts,
        ("balanced_softmax", "cosine"), PROBE, FULL, PROVENANCE))


def test_first_filter_separates_tail_from_head_far_above_chance(
    bank: Bank, cascade: Cascade
) -> None:
    first = filter_report(model_of(cascade), bank.splits(), bank.counts)[0]
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
    reports = filter_report(model_of(cascade), bank.splits(), bank.counts)
    for report in reports:
        assert report.routed_share["train"] == pytest.approx(
            FULL.routed_share * report.seen_share["train"], abs=1.5 / len(bank.train_y)
        )
        assert sum(report.cluster_sizes) == round(report.seen_share["train"] * len(bank.train_y))


def test_fit_returns_the_rows_each_number_of_filters_leaves(
    bank: Bank, fitted: tuple[Cascade, list[np.ndarray], list[np.ndarray]]
) -> None:
    cascade, left_train, left_val = fitted
    assert len(left_train) == len(left_val) == FULL.num_filters + 1
    np.testing.assert_array_equal(left_train[0], np.arange(len(bank.train_y)))
    for filters in range(1, FULL.num_filters + 1):
        train_rest = cascade.route(bank.train_x, filters).assignment == -1
        val_rest = cascade.route(bank.val_x, filters).assignment == -1
        np.testing.assert_array_equal(left_train[filters], np.flatnonzero(train_rest))
        np.testing.assert_array_equal(left_val[filters], np.flatnonzero(val_rest))


def test_combine_takes_cascade_logits_for_routed_rows_and_the_remainder_for_the_rest(
    bank: Bank, cascade: Cascade
) -> None:
    rest = np.random.default_rng(0).normal(size=(len(bank.test_y), len(bank.counts)))
    routed = cascade.route(bank.test_x)
    combined = routed.combine(rest)
    mask = routed.assignment >= 0
    assert mask.any() and (~mask).any()
    np.testing.assert_array_equal(combined[mask], routed.logits[mask])
    np.testing.assert_array_equal(combined[~mask], rest[~mask].astype(np.float32))
    with pytest.raises(FeaturesError, match="remainder logits have 5 rows"):
        routed.combine(rest[:5])


def test_fewer_filters_leave_the_later_filters_rows_to_the_remainder(
    bank: Bank, cascade: Cascade
) -> None:
    every = cascade.route(bank.test_x)
    first = cascade.route(bank.test_x, 1)
    np.testing.assert_array_equal(first.assignment, np.where(every.assignment == 0, 0, -1))
    none = cascade.route(bank.test_x, 0)
    assert isinstance(none, RoutedPrediction) and (none.assignment == -1).all()


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


def test_each_filters_prior_counts_every_training_row_of_the_cluster(
    bank: Bank, fitted: tuple[Cascade, list[np.ndarray], list[np.ndarray]]
) -> None:
    """"training samples belonging to the cluster": all of the bank's rows, not only the rows
    that reach or are routed by the filter."""
    cascade, left_train, _ = fitted
    labels = torch.from_numpy(bank.train_y)
    for index, (flow, classifier) in enumerate(
        zip(cascade.filters, cascade.classifiers, strict=True)
    ):
        _, clusters = evaluate_flow(flow, bank.train_x)
        every_row = cluster_prior(clusters, labels, flow.num_clusters, len(bank.counts))
        torch.testing.assert_close(classifier.cluster_prior, every_row)
        if index > 0:  # the rows reaching a later filter would give another prior
            reach = torch.from_numpy(left_train[index])
            reaching = cluster_prior(clusters[reach], labels[reach], flow.num_clusters,
                                     len(bank.counts))
            assert not torch.allclose(classifier.cluster_prior, reaching)


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


def test_head_map_recovers_a_linear_head_and_refuses_a_nonlinear_one() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6))
    weight, bias = rng.normal(size=(4, 6)), rng.normal(size=4)
    found = head_map(x, x @ weight.T + bias)
    assert found is not None and found.source == "head"
    np.testing.assert_allclose(found.weight.numpy(), weight, atol=1e-5)
    np.testing.assert_allclose(found.bias.numpy(), bias, atol=1e-5)
    cosine = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ weight.T
    assert head_map(x, cosine) is None
    assert head_map(x[:6], x[:6] @ weight.T) is None  # too few rows to tell


def test_a_classifier_started_from_a_linear_map_starts_as_that_map() -> None:
    """W x + b on raw features, whatever z and the cluster prior say."""
    generator = torch.Generator().manual_seed(2)
    mean, std = torch.randn(5, generator=generator), torch.rand(5, generator=generator) + 0.5
    initial = LinearMap(torch.randn(3, 5, generator=generator), torch.randn(3, generator=generator),
                        "head")
    prior = torch.softmax(torch.randn(2, 3, generator=generator), dim=1)
    classifier = ClusterAidedClassifier(5, 4, prior, mean, std, seed=0, initial=initial)
    x, z = torch.randn(7, 5, generator=generator), torch.randn(7, 4, generator=generator)
    clusters = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    torch.testing.assert_close(classifier(x, z, clusters), x @ initial.weight.T + initial.bias)
    wrong = LinearMap(torch.zeros(3, 4), torch.zeros(3), "head")
    with pytest.raises(FeaturesError, match="initial classifier maps 4 features"):
        ClusterAidedClassifier(5, 4, torch.zeros(2, 3), mean, std, seed=0, initial=wrong)


def test_cascade_starts_its_classifiers_from_the_head_when_the_bank_has_a_linear_one(
    bank: Bank,
) -> None:
    weight = np.random.default_rng(3).normal(size=(len(bank.counts), bank.train_x.shape[1]))
    logits = (bank.train_x @ weight.T).astype(np.float32)
    found = dlsa_fit.initial_map("head", bank.train_x, logits, {})
    assert found is not None and found.source == "head"
    np.testing.assert_allclose(found.weight.numpy(), weight, atol=1e-3)
    assert dlsa_fit.initial_map("none", bank.train_x, logits, {}) is None
    cascade = bank.fit(TINY, initial=found)
    assert [info["init"] for info in cascade.info] == ["head"] * TINY.num_filters


def test_the_remainder_classifier_sees_only_the_rows_the_filters_leave(
    bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real = dlsa_fit.fit_classifier

    def recording(kind: str, **kwargs: object):  # type: ignore[no-untyped-def]
        rows = as_rows(kwargs["train_x"], "train_x")
        seen.append((rows.take(torch.arange(len(rows))).numpy(), np.asarray(kwargs["train_y"])))
        return real(kind, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dlsa_fit, "fit_classifier", recording)
    model, _ = fit_dlsa((bank.train_x, bank.train_y, None), (bank.val_x, bank.val_y, None),
                        bank.counts, ("balanced_softmax",), PROBE, TINY, PROVENANCE)
    assert len(seen) == 1 + TINY.num_filters  # the base, then one remainder per n
    np.testing.assert_array_equal(seen[0][0], bank.train_x)
    for filters in range(1, TINY.num_filters + 1):
        left = model.cascade.route(bank.train_x, filters).assignment == -1
        x, y = seen[filters]
        np.testing.assert_array_equal(x, bank.train_x[left])
        np.testing.assert_array_equal(y, bank.train_y[left])
        assert model.remainder("balanced_softmax", filters) is model.remainders[
            "balanced_softmax"][filters - 1]


def test_remainder_base_keeps_the_whole_bank_classifier(bank: Bank) -> None:
    config = dataclasses.replace(TINY, remainder="base")
    model, _ = fit_dlsa((bank.train_x, bank.train_y, None), (bank.val_x, bank.val_y, None),
                        bank.counts, ("balanced_softmax",), PROBE, config, PROVENANCE)
    assert model.remainders == {}
    for filters in range(TINY.num_filters + 1):
        assert model.remainder("balanced_softmax", filters) is model.bases["balanced_softmax"]


def test_gate_halves_of_val_are_disjoint_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [10, 7, 2, 1])
    select, gate = split_val(labels, 0.5, seed=0)
    assert set(select).isdisjoint(gate) and len(select) + len(gate) == len(labels)
    assert np.bincount(labels[gate], minlength=4).tolist() == [5, 3, 1, 0]
    again = split_val(labels, 0.5, seed=0)
    np.testing.assert_array_equal(again[1], gate)
    assert not np.array_equal(split_val(labels, 0.5, seed=1)[1], gate)


def test_the_gate_never_chooses_a_cascade_worse_on_its_val_rows(
    bank: Bank, dlsa: tuple[DLSAModel, GateReport]
) -> None:
    model, report = dlsa
    _, gate = split_val(bank.val_y, FULL.gate_share, FULL.seed)
    assert report.rows == len(gate)
    for kind, chosen in model.gates.items():
        scores = [float((model.logits(kind, bank.val_x[gate], None, n).argmax(axis=1)
                         == bank.val_y[gate]).mean()) for n in range(FULL.num_filters + 1)]
        assert report.accuracy[kind] == pytest.approx(scores)
        # the best of the base and the cascades that pass the sign test, fewest filters on ties
        passed = [0] + [n + 1 for n in holm_rejected(report.p_values[kind], FULL.gate_alpha)]
        assert chosen == max(passed, key=lambda n: (scores[n], -n))
        assert scores[chosen] >= scores[0]


def test_the_sign_test_is_mcnemars_exact_one_sided_test() -> None:
    """p = P(X >= k), X ~ Binomial(m, 1/2), over the m rows where exactly one is right."""
    base = np.array([0, 0, 0, 0, 0, 1, 1, 1], bool)
    fixes_five = np.array([1, 1, 1, 1, 1, 1, 1, 1], bool)  # 5 fixed, 0 broken
    assert sign_test(fixes_five, base) == pytest.approx(0.5 ** 5)
    three_of_four = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)  # 3 fixed, 1 broken
    assert sign_test(three_of_four, base) == pytest.approx(5 / 16)  # (4 + 1) / 2^4
    assert sign_test(base, base) == 1.0  # no row where they disagree


def test_holm_rejects_in_step_down_order() -> None:
    """The k-th smallest of m p-values is rejected while p < alpha / (m - k)."""
    assert holm_rejected([0.02, 0.01, 0.2], 0.05) == [0, 1]  # 0.01 < 0.05/3, 0.02 < 0.05/2
    assert holm_rejected([0.03, 0.04, 0.2], 0.05) == []  # 0.03 >= 0.05/3 stops it
    assert holm_rejected([0.2, 0.001, 0.04], 0.05) == [1]  # 0.04 >= 0.05/2
    assert holm_rejected([0.5], 1.0) == [0] and holm_rejected([], 0.05) == []


def test_the_gate_needs_evidence_to_leave_the_base(
    bank: Bank, dlsa: tuple[DLSAModel, GateReport]
) -> None:
    """At a level no gain of a few hundred rows reaches, the gate keeps the base; at level 1
    it keeps the best gate accuracy whatever the evidence (the gate before the test)."""
    model, _ = dlsa
    _, gate = split_val(bank.val_y, FULL.gate_share, FULL.seed)
    rows = as_rows(bank.val_x[gate], "x")
    strict = choose_gates(model, rows, bank.val_y[gate], None, alpha=1e-30)
    assert set(strict.chosen.values()) == {0}
    loose = choose_gates(model, rows, bank.val_y[gate], None, alpha=1.0)
    for kind, scores in loose.accuracy.items():
        assert loose.chosen[kind] == max(range(len(scores)), key=lambda n: (scores[n], -n))


def test_gate_keeps_filters_that_help(bank: Bank) -> None:
    """A backbone head that calls every tail row class 0: the filters route the tail rows
    to classifiers that get them right, so the gate must keep at least one filter."""
    wrong_tail = np.zeros(len(bank.counts), np.float32)
    wrong_tail[0] = 10.0

    def head_logits(labels: np.ndarray) -> np.ndarray:
        logits = 10.0 * np.eye(len(bank.counts), dtype=np.float32)[labels]
        logits[labels >= HEAD] = wrong_tail
        return logits

    config = dataclasses.replace(FULL, init="none")
    model, report = _one_thread(lambda: fit_dlsa(
        (bank.train_x, bank.train_y, head_logits(bank.train_y)),
        (bank.val_x, bank.val_y, head_logits(bank.val_y)),
        bank.counts, ("head",), PROBE, config, PROVENANCE))
    print("gate accuracy of 0..3 filters:", report.accuracy["head"])
    assert model.gates["head"] >= 1
    assert report.accuracy["head"][model.gates["head"]] > report.accuracy["head"][0] + 0.3


def test_choose_gates_takes_the_fewest_filters_among_the_best(
    bank: Bank, dlsa: tuple[DLSAModel, GateReport]
) -> None:
    model, _ = dlsa
    rows = as_rows(bank.val_x[:0], "x")
    empty = choose_gates(model, rows, bank.val_y[:0], None)
    assert empty.rows == 0 and set(empty.chosen.values()) == {model.num_filters}


def test_same_seed_same_cascade_bytes(bank: Bank, tmp_path: Path) -> None:
    first, second = bank.fit(TINY), bank.fit(TINY)
    save_cascade(first, tmp_path / "a.pt")
    save_cascade(second, tmp_path / "b.pt")
    save_cascade(first, tmp_path / "c.pt")
    data = (tmp_path / "a.pt").read_bytes()
    assert data == (tmp_path / "b.pt").read_bytes() == (tmp_path / "c.pt").read_bytes()
    other = bank.fit(dataclasses.replace(TINY, seed=1))
    save_cascade(other, tmp_path / "d.pt")
    assert (tmp_path / "d.pt").read_bytes() != data


def test_check_bank_names_the_bank_on_mismatch(cascade: Cascade) -> None:
    cascade.check_bank(cascade.dim, cascade.num_classes, "banks/ce.h5")
    with pytest.raises(FeaturesError, match=r"banks/ce.h5: bank has 9 features and 13 classes"):
        cascade.check_bank(9, cascade.num_classes, "banks/ce.h5")
    with pytest.raises(FeaturesError, match="banks/ce.h5"):
        cascade.check_bank(cascade.dim, 7, "banks/ce.h5")


def test_checkpoints_resume_to_the_same_cascade(bank: Bank, tmp_path: Path) -> None:
    plain = bank.fit(TINY)
    first = bank.fit(TINY, checkpoint_dir=tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "filter0.pt",
        "filter1.pt",
        "filter2.pt",
    ]
    resumed = bank.fit(TINY, checkpoint_dir=tmp_path / "ckpt")
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
        {"flow": dataclasses.replace(TINY.flow, mle="mean", mle_sampler="class_uniform")},
    ],
)
def test_ablations_run(bank: Bank, change: dict[str, object]) -> None:
    config = dataclasses.replace(TINY, **change)
    cascade = bank.fit(config)
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
        ({"remainder": "all"}, "CascadeConfig.remainder must be one of"),
        ({"init": "zero"}, "CascadeConfig.init must be one of"),
        ({"gate_share": 1.0}, "CascadeConfig.gate_share must be < 1"),
    ],
)
def test_config_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(FeaturesError, match=message):
        dataclasses.replace(TINY, **change)


def test_too_many_filters_for_the_rows_is_an_error(bank: Bank) -> None:
    config = dataclasses.replace(TINY, num_filters=40, routed_share=0.9)
    with pytest.raises(FeaturesError, match="training rows remain"):
        bank.fit(config)
