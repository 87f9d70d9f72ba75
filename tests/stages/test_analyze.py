"""Tests of the analyze stage: its files, their bytes across runs, t-SNE sample, binned confusion."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from stages import analyze
from stages.errors import StageError
from stages.params import Params, parse_params
from tests.features.synthetic import COUNTS, write_bank
from tests.stages.conftest import tiny_params

FILES = ("analysis.json", "metrics.json", "confusion.json", "rho.csv", "clusters.csv", "tsne.csv")



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
    write_bank(tmp_path / "banks" / "ce" / "seed0.h5")
    return tmp_path


def test_analyze_writes_its_files_with_the_same_bytes_twice(project: Path) -> None:
    params = small_params()
    out = analyze.run(params, "ce", 0)
    assert out == Path("results/analyze/ce/seed0")
    first = {name: (out / name).read_bytes() for name in FILES}
    analyze.run(params, "ce", 0)
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
    write_bank(project / "banks" / "ce" / "seed0.h5", logits=False)
    out = analyze.run(small_params(tsne_samples=0), "ce", 0)
    assert json.loads((out / "confusion.json").read_text()) is None
    assert (out / "tsne.csv").read_text() == "x,y,label,group\n"
    assert json.loads((out / "metrics.json").read_text())["mean_positive_posterior"] is None


def test_analyze_needs_the_bank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageError, match=r"banks/ce/seed0.h5: not found; run `tailbank dump"):
        analyze.run(small_params(), "ce", 0)


def test_analyze_over_the_memory_budget_writes_the_same_bytes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test split (40 rows x 6 floats, ~1 KiB) read from the bank under a 256-byte budget (the z view takes 320 bytes):
    the same files as with the whole split in memory, and the split is never read whole."""
    import features.analysis.separability
    from features.bank import Bank

    # score the probe in blocks smaller than the split, in both runs
    monkeypatch.setattr(features.analysis.separability, "_TEST_ROWS", 7)
    out = analyze.run(small_params(), "ce", 0)
    in_memory = {name: (out / name).read_bytes() for name in FILES}
    whole: list[str] = []
    read, read_rows = Bank._read, Bank.read_rows

    def spy_read(self: Bank, split: str, field: str) -> np.ndarray:
        if split == "test" and field != "labels":
            whole.append(field)
        return read(self, split, field)

    def spy_read_rows(self: Bank, split: str, field: str, start: int, stop: int) -> np.ndarray:
        if split == "test" and start == 0 and stop >= self.size(split):
            whole.append(field)
        return read_rows(self, split, field, start, stop)

    monkeypatch.setattr(Bank, "_read", spy_read)
    monkeypatch.setattr(Bank, "read_rows", spy_read_rows)
    raw = small_params().model_dump()
    raw["memory"] = {"budget_mb": 256 / 2**20}
    analyze.run(parse_params(raw, origin="params.yaml"), "ce", 0)
    assert {name: (out / name).read_bytes() for name in FILES} == in_memory
    assert whole == []
