"""Tests of the MBIB representation statistics: Eq. 15-17 (D_intra, D_inter, rho) and Eq. 14."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest

import features.analysis.representation as representation
from features.analysis.groups import class_group_means
from features.analysis.representation import (
    mean_positive_posterior,
    pairwise_distance_sums,
    representation_stats,
)
from features.errors import FeaturesError

# --- Eq. 15-17 ---------------------------------------------------------------------------------


def rho_transcription(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Eq. 15-17 of the MBIB paper, literally: double loops over ordered pairs."""
    classes = sorted(set(y.tolist()))
    intra = 0.0
    centres = []
    for i in classes:
        rows = x[y == i].astype(np.float64)
        total = sum(np.linalg.norm(a - b) for a in rows for b in rows)  # j = k included
        intra += total / len(rows) ** 2
        centres.append(rows.mean(axis=0))
    d_intra = intra / len(classes)
    big_k = len(centres)
    d_inter = sum(
        np.linalg.norm(centres[i] - centres[j])
        for i in range(big_k)
        for j in range(big_k)
        if j != i
    ) / (big_k * (big_k - 1))
    return d_intra, d_inter, d_intra / d_inter


def test_rho_matches_a_direct_transcription_of_eq_15_to_17() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=40)
    y[:5] = np.arange(5)  # every class present
    x = rng.normal(size=(40, 6)) * rng.uniform(0.5, 3.0, size=6)
    counts = np.array([200, 150, 60, 30, 5])
    summary = representation_stats(x, y, counts).summary()["overall"]
    expected = rho_transcription(x, y)
    np.testing.assert_allclose(
        [summary["d_intra"], summary["d_inter"], summary["rho"]], expected, rtol=1e-10
    )


def test_rho_per_shot_group_follows_the_documented_definition() -> None:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), [6, 5, 4, 3])
    x = rng.normal(size=(len(y), 3))
    counts = np.array([300, 120, 50, 4])  # many, many, medium, few
    stats = representation_stats(x, y, counts)
    centres = np.stack([x[y == c].mean(axis=0) for c in range(4)])
    # D_inter of a group: mean distance from its centres to every other centre
    many_inter = np.mean(
        [np.linalg.norm(centres[i] - centres[j]) for i in (0, 1) for j in range(4) if j != i]
    )
    many_intra = np.mean(
        [np.mean([np.linalg.norm(a - b) for a, b in product(x[y == c], repeat=2)]) for c in (0, 1)]
    )
    many = stats.summary()["many"]
    np.testing.assert_allclose([many["d_intra"], many["d_inter"]], [many_intra, many_inter])
    np.testing.assert_allclose(many["rho"], many_intra / many_inter)
    # the |G|-weighted group D_inter add up to Eq. 16
    summary = stats.summary()
    weighted = (2 * many["d_inter"] + summary["medium"]["d_inter"] + summary["few"]["d_inter"]) / 4
    np.testing.assert_allclose(weighted, summary["overall"]["d_inter"])


def test_representation_stats_skip_absent_classes() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    y = np.array([0, 0, 2])
    stats = representation_stats(x, y, np.array([10, 10, 10]))
    np.testing.assert_allclose(stats.intra, [5.0 * 2 / 4, np.nan, 0.0])
    np.testing.assert_allclose(stats.inter, [np.hypot(4.5, 6.0), np.nan, np.hypot(4.5, 6.0)])
    only_one = representation_stats(x[:2], y[:2], np.array([10, 10, 10])).summary()["overall"]
    assert only_one["d_inter"] is None and only_one["rho"] is None


def test_pairwise_sums_in_small_blocks_equal_the_direct_sums(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    points = np.random.default_rng(2).normal(size=(23, 5)) * 10
    direct = np.array([sum(np.linalg.norm(a - b) for b in points) for a in points])
    monkeypatch.setattr(representation, "_BLOCK_ELEMENTS", 30)  # blocks of one row
    np.testing.assert_allclose(pairwise_distance_sums(points), direct, rtol=1e-12)
    # duplicates sit at distance 0 from themselves and from each other
    assert pairwise_distance_sums(np.ones((4, 3)))[0] == 0.0


# --- Eq. 14 ------------------------------------------------------------------------------------


def test_mean_positive_posterior_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(30, 4)) * 3
    labels = rng.integers(0, 3, size=30)  # class 3 has no rows
    expected = np.full(4, np.nan)
    for c in range(3):
        rows = logits[labels == c]
        probs = np.exp(rows) / np.exp(rows).sum(axis=1, keepdims=True)
        expected[c] = probs[:, c].mean()
    np.testing.assert_allclose(mean_positive_posterior(logits, labels, 4), expected, rtol=1e-12)
    means = class_group_means(expected, np.array([500, 50, 5, 2]))
    assert means["many"] == pytest.approx(expected[0])
    assert means["few"] == pytest.approx(expected[2])  # class 3 (NaN) skipped
    assert means["overall"] == pytest.approx(np.nanmean(expected))
    with pytest.raises(FeaturesError, match=r"logits: expected \[30, 5\]"):
        mean_positive_posterior(logits, labels, 5)
