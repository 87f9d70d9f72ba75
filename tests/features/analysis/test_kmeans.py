"""Tests of the spherical k-means: recovery of clear classes, purity, majorities, seeding."""

from __future__ import annotations

import numpy as np
import pytest

import features.analysis.kmeans as kmeans
from features.analysis.kmeans import ClusterReport, kmeans_clusters
from features.configs import KmeansConfig
from features.errors import FeaturesError
from tests.features.synthetic import blobs


def test_kmeans_recovers_well_separated_classes() -> None:
    counts = np.array([80, 60, 40, 10, 5])
    x, y = blobs(counts, dim=8, seed=0, spread=0.3, scale=5.0)
    report = kmeans_clusters(x, y, counts, KmeansConfig(seed=0), tail_max_count=10)
    summary = report.summary()
    assert summary["n_clusters"] == 5
    assert summary["purity"] == 1.0 and summary["empty_clusters"] == 0
    assert sorted(report.majority.tolist()) == [0, 1, 2, 3, 4]
    assert summary["sizes_sorted"] == [80, 60, 40, 10, 5]
    assert summary["tail_classes"] == 2 and summary["tail_classes_with_cluster"] == 2
    for cluster in summary["clusters"]:
        assert cluster["majority_is_tail"] == (cluster["majority_label"] >= 3)
    again = kmeans_clusters(x, y, counts, KmeansConfig(seed=0), tail_max_count=10)
    np.testing.assert_array_equal(again.majority, report.majority)


def test_kmeans_purity_and_majorities_count_rows() -> None:
    # clusters: 0 -> labels [1, 1, 2], 1 -> [0, 2, 2, 2], 2 -> [3, 1] (tie: smallest label), 3 empty
    cluster = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    labels = np.array([1, 1, 2, 0, 2, 2, 2, 3, 1])
    majority, count = kmeans._majorities(cluster, labels, 4, 4)
    np.testing.assert_array_equal(majority, [1, 2, 1, -1])
    np.testing.assert_array_equal(count, [2, 3, 1, 0])
    report = ClusterReport(
        sizes=np.bincount(cluster, minlength=4),
        majority=majority,
        majority_count=count,
        class_counts=np.array([100, 100, 100, 3]),
        shot_group=np.array(["many", "many", "many", "few"]),
        is_tail=np.array([False, False, False, True]),
    )
    summary = report.summary()
    assert summary["purity"] == pytest.approx(6 / 9)
    assert summary["mean_cluster_purity"] == pytest.approx((2 / 3 + 3 / 4 + 1 / 2) / 3)
    assert summary["empty_clusters"] == 1 and summary["clusters"][3]["majority_label"] is None


def test_kmeans_plus_plus_seeding_is_seeded_and_copes_with_duplicates() -> None:
    x = np.random.default_rng(4).normal(size=(40, 3)).astype(np.float32)
    config = KmeansConfig(seed=3, seeding_rows_per_cluster=2)
    first = kmeans._kmeans_plus_plus(x, 6, config)
    assert first.shape == (6, 3) and len(np.unique(first, axis=0)) == 6
    np.testing.assert_array_equal(kmeans._kmeans_plus_plus(x, 6, config), first)
    same = kmeans._kmeans_plus_plus(np.ones((5, 3), np.float32), 3, config)
    np.testing.assert_array_equal(same, np.ones((3, 3)))
    # a sample cap below the number of clusters still gives every cluster a row
    y = np.arange(40) % 4
    report = kmeans_clusters(x, y, np.full(4, 10), KmeansConfig(n_clusters=8, max_train_rows=3))
    assert report.sizes.sum() == 40 and len(report.sizes) == 8


def test_kmeans_with_more_clusters_than_rows_is_an_error() -> None:
    x, y = blobs(np.array([2, 2]), dim=3, seed=0)
    with pytest.raises(FeaturesError, match="n_clusters=5 exceeds the 4 rows"):
        kmeans_clusters(x, y, np.array([2, 2]), KmeansConfig(n_clusters=5))


def test_kmeans_config_validation() -> None:
    with pytest.raises(FeaturesError, match="KmeansConfig.niter must be >= 1"):
        KmeansConfig(niter=0)
