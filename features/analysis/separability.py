"""Head/tail linear separability: a class-balanced logistic probe (scikit-learn), head vs tail.

Tail means at most `tail_max_count` training images (50, the tail of DLSA); head is every
other class. The probe is fitted on the index split and scored on the query split; its
balanced accuracy says how linearly a backbone's features keep tail rows apart from head rows.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from features.analysis.result import Separability
from features.analysis.sample import seeded_rows
from features.bank.rows import ArrayRows, FeatureRows
from features.configs import SeparabilityConfig
from features.errors import FeaturesError

# Standardising a feature that is constant on the probe's rows would divide by zero.
# Test rows scored at once: a constant, so decisions do not depend on where rows are held.
_TEST_ROWS = 4096
_MIN_STD = 1e-6
# L-BFGS stops at this gradient tolerance: scikit-learn's default 1e-4 stops short of the
# optimum on these small penalties (a probe of other decisions); 1e-8 reaches it.
TOL = 1e-8
# l2 = 0 (no penalty) as a finite C: scikit-learn needs C > 0.
_MIN_L2 = 1e-12


def head_tail_separability(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    class_counts: np.ndarray,
    config: SeparabilityConfig | None = None,
    *,
    tail_max_count: int = 50,
) -> Separability:
    """Balanced accuracy of a head-vs-tail logistic probe; see `separability_rows`.

    Args:
        train_x: float [N, D], rows the probe is fitted on.
        train_y: int [N], their labels.
        test_x: float [M, D], rows it is scored on.
        test_y: int [M].
        class_counts: int [C], training rows per class; tail = count <= tail_max_count.
        config: Probe settings; None = defaults.
        tail_max_count: See above.

    Returns:
        The scores, or None scores with a reason.
    """
    train_x = np.asarray(train_x)
    if train_x.ndim != 2 or len(train_x) != len(train_y):
        raise FeaturesError(
            f"train_x: expected [N, D] rows with N = len(train_y) = {len(train_y)}, "
            f"got {train_x.shape}"
        )
    return separability_rows(
        ArrayRows(train_x, "train_x"),
        np.asarray(train_y, np.int64),
        test_x,
        test_y,
        class_counts,
        config or SeparabilityConfig(),
        tail_max_count=tail_max_count,
    )


def separability_rows(
    train: FeatureRows,
    train_y: np.ndarray,
    test_x: np.ndarray | FeatureRows,
    test_y: np.ndarray,
    class_counts: np.ndarray,
    config: SeparabilityConfig,
    *,
    tail_max_count: int = 50,
) -> Separability:
    """Fits a logistic probe tail-vs-head on train rows and scores it on the test rows.

    Tail: classes with at most `tail_max_count` training rows (DLSA's definition); head: the
    others. Each group gets half of the loss whatever its size (class-balanced weighting of
    the two groups), inputs are standardised by the fitted rows' mean and std, and the
    weights start at zero, so the fit is deterministic.

    Args:
        train: float32 [N, D] train rows, in memory or read from a bank; the probe gathers
            a seeded sample of them.
        train_y: int64 [N], their labels.
        test_x: float [M, D], an array or rows read from a bank; scored in blocks.
        test_y: int [M].
        class_counts: int [C], training rows per class.
        config: Probe settings.
        tail_max_count: See above.

    Returns:
        The scores, or None scores with a reason.
    """
    is_tail = np.asarray(class_counts) <= tail_max_count
    counts = {"num_head_classes": int((~is_tail).sum()), "num_tail_classes": int(is_tail.sum())}
    train_tail = is_tail[train_y]
    test_tail = is_tail[np.asarray(test_y, np.int64)]
    reason = _unmeasurable(counts, train_tail, test_tail, tail_max_count)
    if reason is not None:
        return Separability(None, None, None, reason=reason, **counts)
    rows = _probe_rows(train_tail, config)
    x = train.take_numpy(rows).astype(np.float32)
    target = train_tail[rows]
    # Statistics in float64: float32 sums over many rows lose digits.
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.maximum(x.std(axis=0, dtype=np.float64), _MIN_STD).astype(np.float32)
    weight, bias = _fit_logistic((x - mean) / std, target, config)
    predicted_tail = _predict_tail(test_x, mean, std, weight, bias)
    head_recall = float((~predicted_tail[~test_tail]).mean())
    tail_recall = float(predicted_tail[test_tail].mean())
    return Separability((head_recall + tail_recall) / 2, head_recall, tail_recall, **counts)


@torch.no_grad()
def _predict_tail(
    x: np.ndarray | FeatureRows,
    mean: np.ndarray,
    std: np.ndarray,
    weight: torch.Tensor,
    bias: torch.Tensor,
) -> np.ndarray:
    """bool [M], the probe's tail decision for rows x [M, D], in blocks of `_TEST_ROWS` (the
    same blocks whether x is in memory or read from a bank)."""
    rows = x if isinstance(x, FeatureRows) else ArrayRows(np.asarray(x, np.float32))
    decisions = [
        ((torch.from_numpy((block.cpu().numpy() - mean) / std) @ weight + bias) > 0).numpy()
        for block in rows.blocks(_TEST_ROWS)
    ]
    return np.concatenate(decisions) if decisions else np.zeros(0, dtype=bool)


def _unmeasurable(
    counts: dict[str, int], train_tail: np.ndarray, test_tail: np.ndarray, tail_max_count: int
) -> str | None:
    if counts["num_tail_classes"] == 0:
        return (
            f"no tail class: every class has more than tail_max_count={tail_max_count} "
            "training images; raise tail_max_count"
        )
    if counts["num_head_classes"] == 0:
        return (
            f"no head class: every class has at most tail_max_count={tail_max_count} "
            "training images; lower tail_max_count"
        )
    for split, tail in (("train", train_tail), ("test", test_tail)):
        for group, mask in (("head", ~tail), ("tail", tail)):
            if not mask.any():
                return f"the {split} rows hold no {group} class; the probe needs both groups"
    return None


def _probe_rows(train_tail: np.ndarray, config: SeparabilityConfig) -> np.ndarray:
    """Sorted train rows of the probe: a seeded sample of at most max_rows_per_group per group."""
    picked = []
    for offset, mask in enumerate((~train_tail, train_tail)):
        members = np.flatnonzero(mask)
        chosen = seeded_rows(len(members), config.max_rows_per_group, config.seed + offset)
        picked.append(members[chosen])
    return np.sort(np.concatenate(picked))


def _fit_logistic(
    x: np.ndarray, target: np.ndarray, config: SeparabilityConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """min_w,b sum_i a_i BCE(x_i . w + b, t_i) + l2/2 ||w||^2, a_i = 1 / (2 |group of i|).

    scikit-learn's balanced logistic regression minimises 1/2 ||w||^2 + C sum_i n a_i BCE_i,
    the same objective divided by C n when C = 1 / (l2 n); its L-BFGS runs in float64 to a
    tolerance, where a fixed budget of float32 steps could stop short of the optimum.
    """
    probe = LogisticRegression(
        C=1.0 / (max(config.l2, _MIN_L2) * len(target)),
        class_weight="balanced",
        max_iter=config.max_iter,
        tol=TOL,
    )
    with warnings.catch_warnings():
        # a probe stopped by max_iter is still a probe: its score says how far it got
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe.fit(x.astype(np.float64), target)
    weight = torch.from_numpy(probe.coef_[0].astype(np.float32))
    bias = torch.tensor(float(probe.intercept_[0]), dtype=torch.float32)
    return weight, bias
