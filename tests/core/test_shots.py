"""The shot groups every layer shares."""

from __future__ import annotations

import numpy as np

import pipeline.data
from core.shots import SHOT_GROUPS, shot_groups


def test_shot_groups_use_strict_thresholds() -> None:
    groups = shot_groups(np.array([500, 101, 100, 20, 19, 1]))
    assert groups.tolist() == ["many", "many", "medium", "medium", "few", "few"]
    assert shot_groups(np.array([5, 6, 7]), many_above=6, few_below=6).tolist() == [
        "few",
        "medium",
        "many",
    ]


def test_shot_groups_are_one_definition() -> None:
    """pipeline and features name the same groups as core."""
    from features.metrics import SHOT_GROUPS as FEATURES_GROUPS

    assert pipeline.data.SHOT_GROUPS == FEATURES_GROUPS == SHOT_GROUPS
    assert pipeline.data.shot_groups is shot_groups
    assert shot_groups(np.array([3, 30, 300])).dtype == np.dtype("<U6")
