"""Tests of the analyze stage: its files, their bytes across runs, t-SNE sample, binned confusion."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest

from stages import analyze
from stages.errors import StageError
from stages.params import Params, parse_params
from tests.features.synthetic import COUNTS, write_bank
from tests.stages.conftest import tiny_params

FILES = ("analysis.json", "metrics.json", "confusion.json", "rho.csv", "clusters.csv", "tsne.csv")


@pytest.fixture(autouse=True)
def faiss_single_thread() -> Iterator[None]:
    """faiss has its own OpenMP pool; the tests are tiny, so one thread avoids contention."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def small_params(**analyze_keys: object) -> Params:
    raw = tiny_params()
    raw["analyze"] = {
        "k": 3,
        "kmeans_niter": 5,
        "tsne_samples": 30,
        "use_gpu": False,
        **analyze_keys,
    }
    return parse_params(raw, origin="params.yaml")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "banks").mkdir()
    write_bank(tmp_path / "banks" / "ce.h5")
    return tmp_path


def test_analyze_writes_its_files_with_the_same_bytes_twice(project: Path) -> None:
    params = small_params()
    out = analyze.run(params, "ce")
    assert out == Path("results/analyze/ce")
    first = {name: (out / name).read_bytes() for name in FILES}
    analyze.run(params, "ce")
    assert {name: (out / name).read_bytes() for name in FILES} == first

    report = json.loads(first["analysis.json"])
    assert set(report["views"]) == {"features", "extra/z"}
    assert report["config"]["knn"]["k"] == 3 and report["config"]["many_above"] == 60
    metrics = json.loads(first["metrics.json"])
    assert set(metrics) == {
        "knn_purity",
        "knn_purity_few",
        "knn_accuracy",
        "rho",
        "head_tail_balanced_accuracy",
        "kmeans_purity",
        "mean_positive_posterior",
    }
    assert metrics["rho"] == report["views"]["features"]["representation"]["overall"]["rho"]
    rho = list(csv.DictReader((out / "rho.csv").open()))
    assert [row["label"] for row in rho[:4]] == [
        "features overall",
        "features many",
        "features medium",
        "features few",
    ]
    assert len(rho) == 8
    tsne = list(csv.DictReader((out / "tsne.csv").open()))
    assert len(tsne) == 30
    # tail: at most 50 training images, i.e. the classes of 30, 12 and 6
    assert {row["group"] for row in tsne if int(row["label"]) >= 2} == {"tail"}
    assert {row["group"] for row in tsne if int(row["label"]) < 2} == {"head"}
    clusters = list(csv.DictReader((out / "clusters.csv").open()))
    assert len(clusters) == len(COUNTS)
    assert sum(int(row["size"]) for row in clusters) == COUNTS.sum()
    confusion = json.loads(first["confusion.json"])
    assert len(confusion["matrix"]) == len(COUNTS)  # 5 classes: one bin each


def test_analyze_without_logits_writes_null_confusion(project: Path) -> None:
    write_bank(project / "banks" / "ce.h5", logits=False)
    out = analyze.run(small_params(tsne_samples=0), "ce")
    assert json.loads((out / "confusion.json").read_text()) is None
    assert (out / "tsne.csv").read_text() == "x,y,label,group\n"
    assert json.loads((out / "metrics.json").read_text())["mean_positive_posterior"] is None


def test_analyze_needs_the_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageError, match=r"banks/ce.h5: not found; run `tailbank dump"):
        analyze.run(small_params(), "ce")


def test_stratified_rows_take_every_class_alike() -> None:
    labels = np.repeat(np.arange(4), [100, 30, 5, 2])
    rows = analyze.stratified_rows(labels, 16, seed=3)
    assert len(rows) == 16 and len(np.unique(rows)) == 16
    assert np.all(np.diff(rows) > 0)
    per_class = np.bincount(labels[rows], minlength=4)
    assert per_class[2] >= 4 and per_class[3] == 2  # small classes are not drowned out
    np.testing.assert_array_equal(analyze.stratified_rows(labels, 16, seed=3), rows)
    np.testing.assert_array_equal(analyze.stratified_rows(labels, 500, seed=3), np.arange(137))


def test_frequency_confusion_matches_a_direct_count() -> None:
    counts = np.array([5, 50, 20, 50, 1, 9])  # by frequency: 1, 3, 2, 5, 0, 4
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=200)
    predicted = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 6, size=200))
    result = analyze.frequency_confusion(predicted, labels, counts, bins=3)
    bins = [[1, 3], [2, 5], [0, 4]]
    assert [b["classes"] for b in result["bins"]] == bins
    assert [(b["min_count"], b["max_count"]) for b in result["bins"]] == [(50, 50), (9, 20), (1, 5)]
    expected = np.zeros((3, 3))
    for a, true_bin in enumerate(bins):
        rows = np.isin(labels, true_bin)
        for b, predicted_bin in enumerate(bins):
            expected[a, b] = np.isin(predicted[rows], predicted_bin).mean()
    np.testing.assert_allclose(result["matrix"], expected)
    assert [b["rows"] for b in result["bins"]] == [int(np.isin(labels, b).sum()) for b in bins]
    # more bins than classes: one class per bin
    assert len(analyze.frequency_confusion(predicted, labels, counts, bins=10)["matrix"]) == 6
