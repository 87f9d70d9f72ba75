"""Tests of the report rendering: tables, missing pieces, self-containedness, byte stability."""

from __future__ import annotations

import base64
import dataclasses
import re
from typing import Any

import numpy as np
import pytest

from features.analysis import AnalysisResult
from features.report import (
    ReportInput,
    ReportSettings,
    chosen_classifier,
    ranking,
    render_report,
    spearman,
    summary_rows,
)

KINDS = ("head", "balanced_softmax", "cosine")
GROUPS = ("overall", "many", "medium", "few")
COUNTS = [120, 80, 50, 30, 20, 12, 8, 5]


def metrics(rng: np.random.Generator) -> dict[str, float]:
    values = {key: float(np.round(rng.uniform(0.5, 1.0), 6)) for key in (*GROUPS, "mcc", "nmi")}
    return {**values, "ece": float(np.round(rng.uniform(0, 0.1), 6)), "val_overall": 0.8}


def analysis(rng: np.random.Generator, method: str) -> dict[str, Any]:
    def view() -> dict[str, Any]:
        by_group = {g: float(rng.uniform(0.3, 1.0)) for g in GROUPS}
        return {
            "dim": 6,
            "knn": {"index": "flat", "query": {"purity": by_group, "accuracy": by_group}},
            "kmeans": {
                "purity": float(rng.uniform(0.5, 1)),
                "clusters": [
                    {
                        "size": int(size),
                        "purity": float(rng.uniform(0.3, 1)),
                        "majority_is_tail": bool(size < 40),
                    }
                    for size in rng.integers(1, 120, size=len(COUNTS))
                ],
            },
            "representation": {
                g: {"d_intra": 1.0, "d_inter": 2.0, "rho": float(rng.uniform(0.2, 0.9))}
                for g in GROUPS
            },
            "separability": {"balanced_accuracy": float(rng.uniform(0.5, 1)), "reason": None},
        }

    return {
        "method": method,
        "backbone": "resnet32",
        "posterior": {g: float(rng.uniform(0.3, 1)) for g in GROUPS},
        "views": {"features": view(), "extra/z": view()},
    }


def set_feature_rho(item: ReportInput, rho: float) -> None:
    """Sets rho (overall) of the `features` view of an item's (frozen) analysis."""
    data = item.analysis.to_json()
    data["views"]["features"]["representation"]["overall"]["rho"] = rho
    item.analysis = AnalysisResult.from_json(data)


def full_input(method: str, seed: int, dlsa: bool = True, analysed: bool = True) -> ReportInput:
    """Every piece of one method, random numbers of the right shapes."""
    rng = np.random.default_rng(seed)
    classify = {kind: metrics(rng) for kind in KINDS}
    classify["cosine"]["val_overall"] = 0.9  # the classifier chosen on val
    per_class = {
        kind: [
            {"class": str(c), "train_count": str(n), "accuracy": f"{rng.uniform(0, 1):.6g}"}
            for c, n in enumerate(COUNTS)
        ]
        for kind in KINDS
    }
    dlsa_metrics = {
        kind: {"base": classify[kind], "dlsa": metrics(rng), "dlsa_paper": metrics(rng),
               "val_overall_dlsa": 0.8, "filters_per_seed": [2]}
        for kind in KINDS[1:]
    }
    filters = [
        {
            "index": index,
            "threshold": -3.0,
            "routed_share": {"test": 0.3},
            "separation_accuracy": {"test": float(rng.uniform(0.4, 1))},
            "tail_share_seen": {"test": 0.4},
            "cluster_sizes": [10, 5, 2],
            "cluster_purity": [0.9, 0.5, None],
            "pure_clusters": 1,
            "routed_accuracy": {"test": {"cluster_aided": 0.75, "balanced_softmax": 0.5}},
        }
        for index in range(3)
    ]
    bins = 4
    matrix = rng.uniform(0, 1, size=(bins, bins))
    tsne = [
        {"x": f"{x:.6g}", "y": f"{y:.6g}", "label": str(label), "group": group}
        for x, y, label, group in zip(
            rng.normal(size=40),
            rng.normal(size=40),
            np.arange(40) % 8,
            ["head", "tail"] * 20,
            strict=True,
        )
    ]
    return ReportInput(
        method=method,
        classify=classify,
        per_class=per_class,
        dlsa=dlsa_metrics if dlsa else None,
        dlsa_filters=filters if dlsa else None,
        analysis=AnalysisResult.from_json(analysis(rng, method)) if analysed else None,
        tsne=tsne if analysed else None,
        confusion={
            "matrix": (matrix / matrix.sum(axis=1, keepdims=True)).tolist(),
            "bins": [{"classes": [b], "min_count": 1, "max_count": 2} for b in range(bins)],
        }
        if analysed
        else None,
        pretrain={"best_epoch": 3, "best_val_acc": 0.9},
    )


def external_references(page: str) -> list[str]:
    """Every src/href target that is neither a data: URI nor an anchor on the page."""
    targets = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page)
    return [t for t in targets if not t.startswith(("data:", "#"))]


SETTINGS = ReportSettings(many_above=60, few_below=20, tail_max_count=50)


def test_report_with_one_method() -> None:
    page, markdown = render_report([full_input("ce", 0)], SETTINGS)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert external_references(page) == []
    assert "many &gt; 60, medium 20\u201360, few &lt; 20" in page
    assert "DLSA separation): at most 50 training images" in page
    other = ReportSettings(many_above=60, few_below=20, tail_max_count=50, dlsa_tail_max_count=30)
    light = ReportInput("ce")
    assert "for the DLSA separation accuracy: at most 30" in render_report([light], other)[0]
    # plots: shot groups, per class, confusion, rho, clusters, t-SNE, separation per filter
    assert page.count('src="data:image/png;base64,') == 7
    summary = markdown.split("## Feature quality")[0]
    # one row per classifier and one per DLSA base kind
    assert summary.count("\n| ce | ") == len(KINDS) + 2
    assert "\n| ce | extra/z |" in markdown  # the separability table has every view
    # the page: a glance table (chosen on val: cosine), every row folded, base vs + DLSA
    assert "<details><summary>All 5 rows" in page
    glance = page.split("<details>")[0].split('id="summary"')[1]
    assert glance.count("<td>ce</td>") == 1 and "<td>cosine</td>" in glance
    assert "<th>few + DLSA (gated)</th>" in page and "<th>+ DLSA (all filters)</th>" in page
    assert "<td>0.750</td><td>0.500 (balanced_softmax)</td>" in page  # routed rows, filter 1


def test_report_with_all_methods_has_a_row_per_method_and_classifier() -> None:
    methods = ("ce", "cbs", "bsce", "paco")
    inputs = [full_input(m, seed) for seed, m in enumerate(methods)]
    page, markdown = render_report(inputs, SETTINGS)
    assert external_references(page) == []
    summary = markdown.split("## Feature quality")[0]
    for method in methods:
        for kind in KINDS:
            assert f"| {method} | {kind} |" in summary
        for kind in KINDS[1:]:
            assert f"| {method} | {kind} + DLSA |" in summary
    assert summary.count("\n| ") == 2 + len(methods) * (len(KINDS) + 2)  # header, rule, rows
    for method in methods:
        assert page.count(f"<td>{method}</td>") >= len(KINDS)
    assert "No DLSA" not in page and "no output for" not in page


def test_report_says_when_dlsa_is_missing_for_a_method_or_all() -> None:
    inputs = [full_input("ce", 0), full_input("cbs", 1, dlsa=False)]
    page, markdown = render_report(inputs, SETTINGS)
    assert "The dlsa stage has no output for: cbs; they are left out here." in page
    assert "The dlsa stage has no output for: cbs." in markdown
    assert "| cbs | cosine + DLSA |" not in markdown and "| ce | cosine + DLSA |" in markdown
    none, _ = render_report([full_input("ce", 0, dlsa=False, analysed=False)], SETTINGS)
    assert "No DLSA results: the dlsa stage has no output for any method." in none
    assert "separation accuracy per filter" not in none  # no Fig. 7 plot


def test_report_without_analysis_or_anything() -> None:
    page, markdown = render_report([full_input("ce", 0, analysed=False)], SETTINGS)
    assert "No feature analysis for: ce." in page and "No feature analysis for: ce." in markdown
    assert "No confusion matrix" in page
    assert page.count("data:image/png") == 3  # shot groups, per class, separation
    empty, markdown = render_report([ReportInput("ce")], SETTINGS)
    assert "No classifier results for: ce." in empty
    assert "No numbers to rank yet" in markdown
    assert external_references(empty) == []


def test_same_input_gives_the_same_bytes_and_pngs_carry_no_software_stamp() -> None:
    inputs = [full_input("ce", 0)]
    first = render_report(inputs, SETTINGS)
    assert render_report(inputs, SETTINGS) == first
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", first[0])
    for data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG") and b"Software" not in png and b"matplotlib" not in png


def test_text_is_escaped() -> None:
    full = full_input("<script>alert(1)</script>", 0)
    item = ReportInput(full.method, classify=full.classify)  # no plots beyond the first
    page, _ = render_report([item], ReportSettings(title="a & b <i>"))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>a &amp; b &lt;i&gt;</title>" in page


def test_ranking_follows_the_numbers() -> None:
    good, bad = full_input("good", 0), full_input("bad", 1)
    for kind in KINDS:
        good.classify[kind].update(overall=0.99, few=0.2)
        bad.classify[kind].update(overall=0.5, few=0.95)
    for item in (good, bad):
        for entry in item.dlsa.values():
            entry["dlsa"] = {**entry["dlsa"], "overall": 0.4, "few": 0.1}
    good.dlsa["cosine"]["dlsa"].update(overall=0.999, few=0.9)  # DLSA helps good/cosine most
    for item, rho in ((good, 0.7), (bad, 0.3)):
        set_feature_rho(item, rho)
    text = " ".join(ranking([good, bad]))
    assert "Highest overall test accuracy: good with the cosine + DLSA classifier (0.999)" in text
    assert "Highest few-shot test accuracy: bad with the head classifier (0.950)" in text
    assert "The lowest \u03c1 (features, overall): bad (0.300)." in text
    assert re.search(r"largest \+0\.\d{3} for good on cosine\); the 95 % interval of the gain", text)
    # swap the numbers: the conclusions swap too
    set_feature_rho(good, 0.1)
    assert "The lowest \u03c1 (features, overall): good (0.100)." in " ".join(ranking([good, bad]))


def test_summary_rows_and_chosen_classifier() -> None:
    item = full_input("ce", 0)
    rows = summary_rows([item])
    assert [row.classifier for row in rows] == [
        "head",
        "balanced_softmax",
        "cosine",
        "balanced_softmax + DLSA",
        "cosine + DLSA",
    ]
    assert chosen_classifier(item) == "cosine"
    assert chosen_classifier(ReportInput("ce")) is None


@pytest.mark.parametrize("column", ["few", "ece"])
def test_best_value_of_a_column_is_bold(column: str) -> None:
    """Bold only where the paired test marked the value best (`ReportSettings.marks`); ECE is
    never tested, so never bold; a tied leader gets ≈ instead."""
    item = ReportInput("ce", classify=full_input("ce", 0).classify)
    item.classify["head"][column] = 0.97 if column == "few" else 0.001
    # the report only ever marks accuracy columns: ECE has no paired test
    marks = {"few": {"ce:head": "best"}, "overall": {"ce:head": "tied", "ce:cosine": "tied"}}
    settings = dataclasses.replace(SETTINGS, marks=marks)
    _, markdown = render_report([item], settings)
    head = next(line for line in markdown.splitlines() if line.startswith("| ce | head |"))
    text = f"{0.97 if column == 'few' else 0.001:.3f}"
    assert (f"**{text}**" in head) == (column == "few")
    assert "≈" in head and "**" not in next(
        line for line in markdown.splitlines() if line.startswith("| ce | cosine |"))
    _, unmarked = render_report([item], SETTINGS)
    assert "**" not in unmarked.split("## Classifiers")[1].split("##")[0]


def test_spearman_matches_scipy_on_random_inputs_with_ties() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(4)
    for _ in range(20):
        a = rng.integers(0, 4, size=9).astype(float)  # many ties
        b = rng.normal(size=9)
        if len(set(a)) > 1:
            assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None


def test_ranking_reports_how_feature_statistics_track_few_shot_accuracy() -> None:
    inputs = [full_input(m, seed) for seed, m in enumerate(("a", "b", "c"))]
    for rank, item in enumerate(inputs):
        item.classify["cosine"]["few"] = 0.5 + 0.1 * rank  # cosine is chosen on val
        set_feature_rho(item, 0.9 - 0.1 * rank)
    text = " ".join(ranking(inputs))
    assert (
        "Across 3 methods, the Spearman correlation of \u03c1 (features, overall) with the "
        "few-shot accuracy of the classifier chosen on val is -1.00." in text
    )
    assert "Spearman" not in " ".join(ranking(inputs[:2]))  # two methods: no correlation
