"""Tests of the typed analysis result: its JSON is analysis.json, key for key, and reads back."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import pytest

from features.analysis import AnalysisResult, GroupMeans, RhoTerms, ViewResult
from features.analysis.analyze import analyze_bank
from features.bank import Bank
from features.configs import AnalysisConfig, KmeansConfig, KnnConfig
from tests.features.synthetic import write_bank

SMALL = AnalysisConfig(knn=KnnConfig(k=3, chunk_rows=16), kmeans=KmeansConfig(niter=5))
# The key order analyze_bank has always written (analysis.json is also sorted on disk).
TOP_KEYS = ["method", "backbone", "dataset", "config", "per_class", "posterior", "views"]
VIEW_KEYS = ["dim", "knn", "kmeans", "representation", "separability", "per_class"]


@pytest.fixture
def result(tmp_path: Path) -> AnalysisResult:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        write_bank(tmp_path / "ce.h5")
        with Bank.open(tmp_path / "ce.h5") as bank:
            return analyze_bank(bank, SMALL)
    finally:
        faiss.omp_set_num_threads(threads)


def test_to_json_keeps_the_key_order_and_reads_back(result: AnalysisResult) -> None:
    data = result.to_json()
    assert list(data) == TOP_KEYS
    view = data["views"]["features"]
    assert list(view) == VIEW_KEYS
    assert list(view["knn"]) == ["index", "query", "self"]
    assert list(view["representation"]) == ["overall", "many", "medium", "few"]
    assert list(view["representation"]["few"]) == ["d_intra", "d_inter", "rho"]
    assert list(view["kmeans"])[-1] == "clusters"
    text = json.dumps(data, allow_nan=False)
    again = AnalysisResult.from_json(json.loads(text))
    assert again == result
    assert json.dumps(again.to_json(), allow_nan=False) == text


def test_attributes_are_the_json_values(result: AnalysisResult) -> None:
    data = result.to_json()
    view = result.views["features"]
    assert isinstance(view, ViewResult) and isinstance(result.posterior, GroupMeans)
    assert view.knn.itself.purity.overall == data["views"]["features"]["knn"]["self"]["purity"]["overall"]
    assert view.representation.of("many") == RhoTerms(**data["views"]["features"]["representation"]["many"])
    assert [cluster.size for cluster in view.kmeans.clusters] == [
        cluster["size"] for cluster in data["views"]["features"]["kmeans"]["clusters"]
    ]
    with pytest.raises(AttributeError):
        view.dim = 3  # frozen


def test_from_json_of_a_partial_analysis_reads_missing_values_as_none() -> None:
    partial = AnalysisResult.from_json({"views": {"features": {"knn": {"index": "flat"}}}})
    view = partial.view("features")
    assert view is not None and partial.view("extra/z") is None
    assert view.knn.index_kind == "flat" and view.knn.query.purity.few is None
    assert view.representation.overall.rho is None and view.kmeans.clusters == ()
    assert partial.posterior is None and partial.backbone is None
