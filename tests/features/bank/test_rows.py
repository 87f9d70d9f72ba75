"""Rows read from a bank on demand give the same tensors, statistics and classifiers as rows
held in memory."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from features.bank import Bank
from features.bank.rows import ArrayRows, BankRows, column_moments, load_rows, window_rows
from features.classifiers import fit_classifier
from features.configs import CascadeConfig, FlowTrainConfig, ProbeConfig
from features.dlsa.fit import fit_dlsa
from features.dlsa.io import save_dlsa_model
from features.dlsa.model import BankProvenance
from features.dlsa.report import filter_report
from features.errors import FeaturesError
from tests.features.synthetic import write_bank


@pytest.fixture()
def bank(tmp_path: Path):
    path = tmp_path / "ce.h5"
    write_bank(path)  # 10-row HDF5 chunks: every gather crosses many chunks
    with Bank.open(path) as opened:
        yield opened


def test_gather_equals_fancy_indexing(bank: Bank) -> None:
    features = bank.features("train")
    positions = np.random.default_rng(0).integers(0, len(features), size=500)  # repeats
    np.testing.assert_array_equal(bank.gather("train", "features", positions),
                                  features[positions])
    np.testing.assert_array_equal(bank.gather("train", "labels", positions[::-1]),
                                  bank.labels("train")[positions[::-1]])
    assert bank.gather("train", "features", np.array([], dtype=np.int64)).shape == (0, 6)


def test_gather_refuses_positions_outside_the_split(bank: Bank) -> None:
    with pytest.raises(FeaturesError, match=r"train/features: row positions must lie in"):
        bank.gather("train", "features", np.array([bank.size("train")]))


def test_bank_rows_equal_array_rows(bank: Bank) -> None:
    features = bank.features("train")
    memory = ArrayRows(features)
    streamed = BankRows(bank, "train", window_rows=7)
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(1))
    for (pos_a, x_a), (pos_b, x_b) in zip(memory.batches(order, 16), streamed.batches(order, 16),
                                          strict=True):
        assert torch.equal(pos_a, pos_b) and torch.equal(x_a, x_b)
    for a, b in zip(memory.blocks(33), streamed.blocks(33), strict=True):
        assert torch.equal(a, b)
    picked = np.array([5, 200, 3, 3, 99])
    subset_a, subset_b = memory.subset(picked), streamed.subset(picked)
    assert torch.equal(subset_a.take(torch.tensor([4, 0])), subset_b.take(torch.tensor([4, 0])))
    nested = streamed.subset(np.arange(100, 200)).subset(np.array([0, 99]))
    assert torch.equal(nested.take(torch.tensor([0, 1])), torch.from_numpy(features[[100, 199]]))
    for a, b in zip(subset_a.blocks(2), subset_b.blocks(2), strict=True):
        assert torch.equal(a, b)


def test_a_window_holds_at_most_window_rows(bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = Bank.gather

    def spy(self: Bank, split: str, field: str, positions: np.ndarray) -> np.ndarray:
        sizes.append(len(positions))
        return original(self, split, field, positions)

    monkeypatch.setattr(Bank, "gather", spy)
    rows = BankRows(bank, "train", window_rows=40)
    order = torch.arange(bank.size("train"))
    assert sum(len(x) for _, x in rows.batches(order, 16)) == bank.size("train")
    # windows are whole batches (32 of at most 40 rows), so batches match the in-memory path
    assert max(sizes) == 32 and sum(sizes) == bank.size("train")


def test_column_moments_match_numpy_and_agree_across_sources(bank: Bank) -> None:
    features = bank.features("train")
    mean_a, std_a = column_moments(ArrayRows(features))
    mean_b, std_b = column_moments(BankRows(bank, "train", window_rows=3))
    assert torch.equal(mean_a, mean_b) and torch.equal(std_a, std_b)
    np.testing.assert_allclose(mean_a.numpy(), features.mean(axis=0, dtype=np.float64), atol=1e-9)
    np.testing.assert_allclose(std_a.numpy(), features.std(axis=0, dtype=np.float64), atol=1e-9)


def test_load_rows_keeps_small_banks_in_memory_and_streams_large_ones(bank: Bank) -> None:
    keys = [("train", "features"), ("val", "features"), ("val", "logits")]
    assert all(isinstance(r, ArrayRows) for r in load_rows(bank, keys, None).values())
    needed = 4 * (6 * (bank.size("train") + bank.size("val")) + 5 * bank.size("val"))
    loaded = load_rows(bank, keys, needed)
    assert isinstance(loaded["train", "features"], ArrayRows)
    assert torch.equal(loaded["val", "logits"].values, torch.from_numpy(bank.logits("val")))
    small = load_rows(bank, keys, needed - 1)
    assert all(isinstance(rows, BankRows) for rows in small.values())
    assert small["train", "features"].window_rows == window_rows(6, needed - 1)
    assert small["val", "logits"].window_rows == window_rows(5, needed - 1)


@pytest.mark.parametrize("kind", ["head", "linear", "balanced_softmax", "cbs_linear", "cosine",
                                  "crt", "lws", "tau_norm"])
def test_classifier_on_streamed_rows_is_bit_identical(bank: Bank, kind: str) -> None:
    config = ProbeConfig(epochs=3, batch_size=16, crt_epochs=2, lws_epochs=2, seed=3)
    labels = {split: bank.labels(split) for split in ("train", "val")}

    def fit(source: str):
        if source == "memory":
            x = {split: bank.features(split) for split in labels}
            logits = (bank.logits("train"), bank.logits("val"))
        else:
            x = {split: BankRows(bank, split, window_rows=20) for split in labels}
            logits = (BankRows(bank, "train", "logits", window_rows=20),
                      BankRows(bank, "val", "logits", window_rows=20))
        return fit_classifier(kind, train_x=x["train"], train_y=labels["train"], val_x=x["val"],
                              val_y=labels["val"], class_counts=bank.meta.class_counts,
                              config=config, head_logits=logits)

    memory, streamed = fit("memory"), fit("stream")
    assert memory.selected == streamed.selected
    assert _state_bytes(memory.model) == _state_bytes(streamed.model)
    test = "features" if kind != "head" else "logits"
    scored = streamed.logits(BankRows(bank, "test", test, window_rows=5))
    reference = memory.logits(bank.features("test") if kind != "head" else bank.logits("test"))
    np.testing.assert_array_equal(scored, reference)


def _state_bytes(model: torch.nn.Module | None) -> bytes:
    if model is None:
        return b""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("latent", ["flow", "feature"])
def test_dlsa_model_on_streamed_rows_is_bit_identical(
    bank: Bank, tmp_path: Path, latent: str
) -> None:
    """Bases, cascade, remainder classifiers and gate, from memory or read in windows."""
    flow = FlowTrainConfig(num_clusters=4, epochs=2, batch_size=32, selection="likelihood")
    config = CascadeConfig(flow=flow, num_filters=2, classifier_epochs=2, classifier_batch_size=8,
                           classifier_lr=0.05, min_val_rows=2, latent=latent)
    labels = {split: bank.labels(split) for split in ("train", "val", "test")}
    counts = bank.meta.class_counts
    provenance = BankProvenance("ce", "resnet20", "synthetic", "c" * 64)
    models, routes = {}, {}
    for source in ("memory", "stream"):
        if source == "memory":
            x = {split: bank.features(split) for split in labels}
        else:
            x = {split: BankRows(bank, split, window_rows=24) for split in labels}
        model, _ = fit_dlsa((x["train"], labels["train"], None), (x["val"], labels["val"], None),
                            counts, ("linear",), ProbeConfig(epochs=1), config, provenance)
        save_dlsa_model(model, tmp_path / f"{source}.pt")
        models[source] = (tmp_path / f"{source}.pt").read_bytes()
        routes[source] = model.logits("linear", x["test"], None, model.num_filters)
        report = filter_report(model, {s: (x[s], labels[s], None) for s in labels}, counts)
        routes[source + " report"] = [r.to_dict() for r in report]
    assert models["memory"] == models["stream"]
    np.testing.assert_array_equal(routes["memory"], routes["stream"])
    assert routes["memory report"] == routes["stream report"]


@pytest.mark.parametrize("positions", [np.array([1.7, 2.2]), np.array([True, False, True]),
                                       np.array([[1, 2], [3, 4]])])
def test_positions_must_be_a_vector_of_integers(bank: Bank, positions: np.ndarray) -> None:
    with pytest.raises(FeaturesError, match=r"train/features: row positions: expected a 1-D"):
        bank.gather("train", "features", positions)
    with pytest.raises(FeaturesError, match=r"row positions: expected a 1-D array"):
        BankRows(bank, "train", window_rows=8).subset(positions)


def test_positions_of_any_integer_type_are_read(bank: Bank) -> None:
    features = bank.features("train")
    for dtype in (np.int16, np.int32, np.uint32, np.uint64):
        np.testing.assert_array_equal(
            bank.gather("train", "features", np.array([3, 0, 3], dtype=dtype)), features[[3, 0, 3]]
        )


def test_a_subset_of_all_rows_in_order_is_no_copy() -> None:
    rows = ArrayRows(np.arange(12, dtype=np.float32).reshape(4, 3))
    assert rows.subset(np.arange(4)) is rows
    assert torch.equal(rows.subset(np.array([3, 1])).values, rows.values[[3, 1]])


def test_representation_stats_of_streamed_rows_are_identical(bank: Bank) -> None:
    from features.analysis.representation import representation_stats

    labels, counts = bank.labels("train"), bank.meta.class_counts
    memory = representation_stats(bank.features("train"), labels, counts)
    streamed = representation_stats(BankRows(bank, "train", window_rows=8), labels, counts)
    np.testing.assert_array_equal(memory.intra, streamed.intra)
    np.testing.assert_array_equal(memory.inter, streamed.inter)
