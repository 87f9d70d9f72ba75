"""Tests of the report stage: it collects what exists per method and names what is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from features.analysis import AnalysisResult
from stages import report
from stages.errors import StageError
from stages.io import write_csv, write_json
from stages.params import Params, parse_params
from tests.stages.conftest import tiny_params

SCALARS = {
    "overall": 0.8,
    "many": 0.9,
    "medium": 0.8,
    "few": 0.6,
    "mcc": 0.7,
    "nmi": 0.7,
    "ece": 0.05,
}


def params_with(methods: tuple[str, ...]) -> Params:
    raw = tiny_params()
    raw["methods"] = {name: raw["methods"][name] for name in methods}
    return parse_params(raw, origin="params.yaml")


def write_classify(method: str, kinds: tuple[str, ...] = ("cosine", "linear")) -> None:
    folder = Path("results/classify") / method / "seed0"
    write_json(folder / "metrics.json", {kind: {**SCALARS, "val_overall": 0.8} for kind in kinds})
    for kind in kinds:
        write_csv(
            folder / "per_class" / f"{kind}.csv",
            ("class", "train_count", "accuracy"),
            [(0, 100, 1.0), (1, 10, 0.5)],
        )


def write_dlsa(method: str) -> None:
    folder = Path("results/dlsa") / method / "seed0"
    write_json(
        folder / "metrics.json",
        {"cosine": {"base": SCALARS, "dlsa": {**SCALARS, "few": 0.7}, "val_overall_dlsa": 0.8}},
    )
    write_json(
        folder / "filters.json",
        [
            {
                "index": 0,
                "threshold": -2.0,
                "routed_share": {"test": 0.3},
                "separation_accuracy": {"test": 0.8},
                "tail_share_seen": {"test": 0.4},
                "cluster_sizes": [4, 2],
                "cluster_purity": [1.0, 0.5],
                "pure_clusters": 1,
            }
        ],
    )


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_report_collects_every_method_and_says_what_is_missing() -> None:
    for method in ("ce", "cbs", "bsce"):
        write_classify(method)
    write_dlsa("ce")
    write_json(Path("results/pretrain/ce/seed0/metrics.json"), {"best_epoch": 2, "best_val_acc": 0.9})
    path = report.run(params_with(("ce", "cbs", "bsce")))
    assert path == Path("reports/index.html")
    page = path.read_text()
    summary = Path("reports/summary.md").read_text()
    assert re.findall(r"src=\"(?!data:)", page) == []
    for method in ("ce", "cbs", "bsce"):
        for kind in ("linear", "cosine"):
            assert f"| {method} | {kind} |" in summary
    # classify.kinds order (linear before cosine), not the file's alphabetical order
    assert summary.index("| ce | linear |") < summary.index("| ce | cosine |")
    assert "| ce | cosine + DLSA |" in summary
    assert "The dlsa stage has no output for: cbs, bsce; they are left out here." in page
    assert "No feature analysis for: ce, cbs, bsce." in page
    assert "tailbank report: digits_lt" in page


def test_report_with_nothing_at_all_still_renders() -> None:
    report.run(params_with(("ce",)))
    page = Path("reports/index.html").read_text()
    assert "No classifier results for: ce." in page
    assert "No DLSA results: the dlsa stage has no output for any method." in page


def test_report_of_a_broken_json_is_one_line() -> None:
    Path("results/classify/ce/seed0").mkdir(parents=True)
    Path("results/classify/ce/seed0/metrics.json").write_text("{not json")
    with pytest.raises(StageError, match=r"results/classify/ce/seed0/metrics.json: not valid JSON"):
        report.run(params_with(("ce",)))


def test_collect_reads_the_analyze_outputs() -> None:
    write_classify("ce")
    folder = Path("results/analyze/ce/seed0")
    write_json(folder / "analysis.json", {"views": {}, "posterior": None})
    write_json(folder / "confusion.json", None)
    write_csv(folder / "tsne.csv", ("x", "y", "label", "group"), [(0.5, 1.5, 0, "head")])
    item = report.collect("ce", params_with(("ce",))).item
    assert item.analysis == AnalysisResult.from_json({"views": {}, "posterior": None})
    assert item.analysis.views == {} and item.analysis.posterior is None
    assert item.confusion is None
    assert item.tsne == [{"x": "0.5", "y": "1.5", "label": "0", "group": "head"}]
    assert json.loads(Path("results/classify/ce/seed0/metrics.json").read_text())["cosine"]["few"] == 0.6
    assert item.per_class is not None and list(item.per_class) == ["linear", "cosine"]
    assert item.dlsa is None and item.dlsa_filters is None and item.pretrain is None
