"""Tests of analyze_bank: every analysis of every view of a bank, as JSON-ready numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from features.analysis import AnalysisResult
from features.analysis.analyze import analyze_bank
from features.analysis.representation import mean_positive_posterior, representation_stats
from features.bank import Bank
from features.configs import AnalysisConfig, KmeansConfig, KnnConfig
from features.errors import FeaturesError
from tests.features.synthetic import COUNTS, write_bank


def test_analysis_config_validation() -> None:
    with pytest.raises(FeaturesError, match="AnalysisConfig.query_split is the index split 'test' too"):
        AnalysisConfig(index_split="test")


SMALL = AnalysisConfig(knn=KnnConfig(k=3, chunk_rows=16), kmeans=KmeansConfig(niter=5))


def test_analyze_bank_reports_everything_as_json(tmp_path: Path) -> None:
    write_bank(tmp_path / "ce.h5")
    with Bank.open(tmp_path / "ce.h5") as bank:
        result = analyze_bank(bank, SMALL)
        again = analyze_bank(bank, SMALL)
    report = result.to_json()  # analysis.json: its keys are the contract with the report
    assert json.dumps(report, allow_nan=False) == json.dumps(again.to_json(), allow_nan=False)
    assert AnalysisResult.from_json(report) == result
    assert result.views["features"].dim == 6 and result.views["extra/z"].knn.index_kind == "flat"
    assert set(report) == {
        "method",
        "backbone",
        "dataset",
        "config",
        "per_class",
        "posterior",
        "views",
    }
    assert report["config"]["knn"]["k"] == 3
    assert report["per_class"]["class_counts"] == COUNTS.tolist()
    assert report["per_class"]["shot_group"] == ["many", "medium", "medium", "few", "few"]
    assert report["per_class"]["is_tail"] == [False, False, True, True, True]
    assert len(report["per_class"]["mean_positive_posterior"]) == 5
    assert set(report["posterior"]) == {"overall", "many", "medium", "few"}
    assert set(report["views"]) == {"features", "extra/z"}
    for view, dim in (("features", 6), ("extra/z", 2)):
        section = report["views"][view]
        assert section["dim"] == dim
        assert set(section) == {
            "dim",
            "knn",
            "kmeans",
            "representation",
            "separability",
            "per_class",
        }
        assert section["knn"]["index"] == "flat"
        for search in ("query", "self"):
            assert set(section["knn"][search]) == {"purity", "accuracy"}
            assert set(section["knn"][search]["purity"]) == {"overall", "many", "medium", "few"}
        assert section["kmeans"]["n_clusters"] == 5
        assert set(section["representation"]) == {"overall", "many", "medium", "few"}
        assert section["separability"]["reason"] is None
        assert set(section["per_class"]) == {
            "knn_purity",
            "knn_accuracy",
            "knn_purity_self",
            "d_intra",
            "d_inter",
        }
        assert all(len(values) == 5 for values in section["per_class"].values())


def test_analyze_bank_agrees_with_the_array_functions(tmp_path: Path) -> None:
    write_bank(tmp_path / "ce.h5")
    with Bank.open(tmp_path / "ce.h5") as bank:
        report = analyze_bank(bank, SMALL)
        test_x, test_y = bank.features("test"), bank.labels("test")
        posterior = mean_positive_posterior(bank.logits("test"), test_y, 5)
        rho = representation_stats(test_x, test_y, COUNTS).summary()["overall"]["rho"]
    np.testing.assert_allclose(report.per_class.mean_positive_posterior, posterior)
    assert report.views["features"].representation.overall.rho == pytest.approx(rho)


def test_analyze_bank_without_logits_and_with_chosen_views(tmp_path: Path) -> None:
    write_bank(tmp_path / "ce.h5", logits=False)
    config = AnalysisConfig(knn=KnnConfig(k=3), kmeans=KmeansConfig(niter=5), views=("extra/z",))
    with Bank.open(tmp_path / "ce.h5") as bank:
        report = analyze_bank(bank, config)
        assert report.posterior is None
        assert report.per_class.mean_positive_posterior is None
        assert list(report.views) == ["extra/z"]
        with pytest.raises(
            FeaturesError,
            match=r"views \['extra/v'\] are not in both 'train' and 'test'; choose from \['features', 'extra/z'\]",
        ):
            analyze_bank(bank, AnalysisConfig(views=("extra/v",)))
        with pytest.raises(FeaturesError, match="AnalysisConfig.query_split must be one of 'train', 'val', 'test', got 'nope'"):
            analyze_bank(bank, AnalysisConfig(query_split="nope"))
