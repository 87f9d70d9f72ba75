"""Tests of training one DLSA flow filter."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from features.configs import FlowTrainConfig
from features.dlsa.losses import expected_batch_weight
from features.dlsa.training import (
    TrainedFilter,
    cluster_class_table,
    epoch_order,
    pure_cluster_count,
    sgd_learning_rate,
    train_filter,
)
from features.errors import FeaturesError

TINY = FlowTrainConfig(num_clusters=6, epochs=4, batch_size=64, seed=0)


@dataclasses.dataclass
class Rows:
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    counts: np.ndarray

    def train(self, config: FlowTrainConfig = TINY, **kwargs: object) -> TrainedFilter:
        return train_filter(
            self.train_x,
            self.train_y,
            self.counts,
            self.val_x,
            self.val_y,
            config,
            name="test filter",
            **kwargs,  # type: ignore[arg-type]
        )


@pytest.fixture(scope="module")
def rows() -> Rows:
    rng = np.random.default_rng(0)
    counts = np.array([150, 60, 12, 4])
    means = 3.0 * rng.normal(size=(4, 5))

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(4), per_class)
        return (means[labels] + rng.normal(size=(len(labels), 5))).astype(np.float32), labels

    return Rows(*draw(counts), *draw(np.full(4, 15)), counts)


def _states_equal(a: TrainedFilter, b: TrainedFilter) -> bool:
    return all(torch.equal(v, b.flow.state_dict()[k]) for k, v in a.flow.state_dict().items())


def test_training_returns_a_frozen_eval_filter_and_a_history(rows: Rows) -> None:
    trained = rows.train()
    assert not trained.flow.training
    assert all(not p.requires_grad for p in trained.flow.parameters())
    assert next(trained.flow.parameters()).device.type == "cpu"
    assert [record["epoch"] for record in trained.history] == [1.0, 2.0, 3.0, 4.0]
    assert 1 <= trained.selected_epoch <= 4
    keys = {"loss", "mle", "balance", "purity", "val_log_likelihood", "val_pure_clusters"}
    assert keys <= set(trained.history[0])
    torch.testing.assert_close(trained.flow.mean, torch.from_numpy(rows.train_x.mean(0)))


def test_same_seed_gives_the_same_filter(rows: Rows) -> None:
    first, second = rows.train(), rows.train()
    assert _states_equal(first, second)
    assert first.history == second.history
    assert not _states_equal(first, rows.train(dataclasses.replace(TINY, seed=1)))


def test_selection_follows_the_history(rows: Rows) -> None:
    config = dataclasses.replace(TINY, epochs=5, selection="likelihood")
    trained = rows.train(config)
    likelihoods = [record["val_log_likelihood"] for record in trained.history]
    assert trained.selected_epoch == int(np.argmax(likelihoods)) + 1
    trained = rows.train(dataclasses.replace(config, selection="purity", min_cluster_size=1))
    scores = [(r["val_pure_clusters"], r["val_log_likelihood"]) for r in trained.history]
    best = max(scores)
    assert trained.selected_epoch == max(e for e, s in enumerate(scores, start=1) if s == best)


def test_without_val_rows_the_last_epoch_is_kept(rows: Rows) -> None:
    trained = train_filter(
        rows.train_x,
        rows.train_y,
        rows.counts,
        rows.val_x[:0],
        rows.val_y[:0],
        TINY,
        name="no val",
    )
    assert trained.selected_epoch == TINY.epochs


def test_resume_from_a_checkpoint_gives_identical_results(rows: Rows, tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, epochs=5)
    whole = rows.train(config)
    checkpoint = tmp_path / "filter.pt"

    def interrupt(epoch: int, record: dict[str, float]) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rows.train(config, checkpoint=checkpoint, on_epoch=interrupt)
    assert checkpoint.exists()
    seen: list[int] = []
    resumed = rows.train(config, checkpoint=checkpoint, on_epoch=lambda e, r: seen.append(e))
    assert seen == [4, 5]
    assert resumed.history == whole.history
    assert resumed.selected_epoch == whole.selected_epoch
    assert _states_equal(resumed, whole)
    assert checkpoint.exists()  # the caller deletes it
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_of_another_config_is_trained_over(rows: Rows, tmp_path: Path) -> None:
    """A run with changed params must not stop on what an interrupted older run left."""
    checkpoint = tmp_path / "filter.pt"
    rows.train(dataclasses.replace(TINY, epochs=1), checkpoint=checkpoint)
    other = dataclasses.replace(TINY, epochs=1, lr=0.1)
    over = rows.train(other, checkpoint=checkpoint)
    assert _states_equal(over, rows.train(other))



def test_an_unreadable_checkpoint_is_an_error(rows: Rows, tmp_path: Path) -> None:
    checkpoint = tmp_path / "filter.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(FeaturesError, match="cannot be read"):
        rows.train(TINY, checkpoint=checkpoint)


def test_non_finite_loss_names_the_filter_epoch_and_step(rows: Rows) -> None:
    with pytest.raises(
        FeaturesError, match=r"'test filter': non-finite loss at epoch \d+ step \d+"
    ):
        rows.train(dataclasses.replace(TINY, lr=1e30, epochs=3))


@pytest.mark.parametrize(
    "change",
    [
        {"weighted_mle": False},
        {"use_balance": False},
        {"use_purity": False},
        {"num_clusters": 2},
        {"selection": "likelihood"},
    ],
)
def test_ablation_switches(rows: Rows, change: dict[str, object]) -> None:
    config = dataclasses.replace(TINY, epochs=2, **change)
    trained = rows.train(config)
    assert trained.flow.num_clusters == config.num_clusters
    assert all(math.isfinite(record["loss"]) for record in trained.history)
    if change == {"use_balance": False}:
        assert all(record["balance"] == 0.0 for record in trained.history)
    if change == {"use_purity": False}:
        assert all(record["purity"] == 0.0 for record in trained.history)
    if change == {"weighted_mle": False}:
        assert not _states_equal(trained, rows.train(dataclasses.replace(TINY, epochs=2)))


def test_pure_cluster_count_matches_its_definition() -> None:
    clusters = torch.tensor([0] * 12 + [1] * 12 + [2] * 3)
    labels = torch.tensor([0] * 11 + [1] + [0] * 6 + [1] * 6 + [2] * 3)
    table = cluster_class_table(clusters, labels, 4, 3)
    assert table.tolist() == [[11, 1, 0], [6, 6, 0], [0, 0, 3], [0, 0, 0]]
    # cluster 0: 12 rows, purity 11/12 > 0.7; cluster 1 impure; cluster 2 too small
    count = pure_cluster_count(clusters, labels, 4, 3, purity_threshold=0.7, min_cluster_size=10)
    assert count == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "FlowTrainConfig.epochs must be >= 1"),
        ({"lr": 0.0}, "FlowTrainConfig.lr must be > 0"),
        ({"eta": 1.0}, "FlowTrainConfig.eta must be < 1"),
        ({"selection": "best"}, "FlowTrainConfig.selection must be one of 'purity', 'likelihood'"),
        ({"q": -1.0}, "FlowTrainConfig.q must be >= 0"),
        ({"sigma": 0.0}, "sigma must be > 0"),
    ],
)
def test_config_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(FeaturesError, match=message):
        dataclasses.replace(TINY, **change)


def test_bad_rows_are_errors(rows: Rows) -> None:
    with pytest.raises(FeaturesError, match="train_y"):
        train_filter(
            rows.train_x, rows.train_y + 10, rows.counts, rows.val_x, rows.val_y, TINY, name="x"
        )
    with pytest.raises(FeaturesError, match="val_x"):
        train_filter(
            rows.train_x, rows.train_y, rows.counts, rows.val_x[:, :2], rows.val_y, TINY, name="x"
        )


def small_bank(dim: int = 64, seed: int = 1) -> Rows:
    """A digits-sized bank: 10 Gaussian classes, 94 down to 4 training rows, 64 features."""
    rng = np.random.default_rng(seed)
    counts = np.array([94, 67, 48, 34, 24, 17, 12, 9, 6, 4])
    means = 1.5 * rng.normal(size=(10, dim))

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(10), per_class)
        return (means[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels

    return Rows(*draw(counts), *draw(np.full(10, 10)), counts)


def test_expected_batch_weight_is_the_mean_weight_of_a_drawn_batch() -> None:
    counts = torch.tensor([94, 48, 12, 4])
    n = counts.double()
    omega = n**-2 / (n**-2).sum()
    assert expected_batch_weight(counts, 2.0, "eq7", "instance", 256) == pytest.approx(
        256 * float((n * omega).sum() / n.sum()))
    assert expected_batch_weight(counts, 2.0, "eq7", "class_uniform", 256) == pytest.approx(
        256 * float(omega.mean()))
    assert expected_batch_weight(counts, 2.0, "mean", "instance", 256) == pytest.approx(1.0)
    labels = torch.repeat_interleave(torch.arange(4), counts)
    generator = torch.Generator().manual_seed(0)
    drawn = torch.cat([epoch_order(labels, "class_uniform", generator) for _ in range(100)])
    empirical = float(omega[labels[drawn]].mean()) * 256
    assert empirical == pytest.approx(
        expected_batch_weight(counts, 2.0, "eq7", "class_uniform", 256), rel=0.05)


def test_sgd_rate_is_lr_per_unit_of_batch_weight() -> None:
    counts = torch.tensor([94, 48, 12, 4])
    config = FlowTrainConfig(num_clusters=4, batch_size=256, lr=0.01)
    mass = expected_batch_weight(counts, 2.0, "eq7", "instance", 256)
    assert sgd_learning_rate(config, counts) == pytest.approx(0.01 / mass)
    literal = dataclasses.replace(config, lr=0.2, lr_scale="none")
    assert sgd_learning_rate(literal, counts) == 0.2


def test_the_papers_fixed_rate_blows_up_a_small_bank_and_the_weight_scaled_rate_does_not() -> None:
    """Eq. 7 sums omega-weighted log-likelihoods over the batch: on a 10-class bank at batch
    256 that sum is ~5 times a row's, against ~0.04 on ImageNet-LT at 1024, so SGD at the
    paper's 0.2 takes steps ~100 times the paper's and a latent explodes (the old failure:
    non-finite loss). At lr / m every epoch's losses stay finite."""
    bank = small_bank()
    paper = FlowTrainConfig(num_clusters=5, epochs=30, batch_size=256, lr=0.2, lr_scale="none")
    with pytest.raises(FeaturesError, match="non-finite loss at epoch"):
        bank.train(paper)
    scaled = dataclasses.replace(paper, lr=0.01, lr_scale="weight")
    trained = bank.train(scaled)
    assert len(trained.history) == 30
    for record in trained.history:
        assert all(math.isfinite(record[key]) for key in ("loss", "mle", "balance", "purity"))
    # and it learns: a later epoch is kept, its val likelihood well above the first epoch's
    kept = trained.history[trained.selected_epoch - 1]
    assert trained.selected_epoch > 1
    assert kept["val_log_likelihood"] > trained.history[0]["val_log_likelihood"] + 5
