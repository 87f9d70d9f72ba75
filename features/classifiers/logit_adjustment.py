"""Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR
2021, Eq. 9), with tau chosen on the balanced val split.

A classifier trained with plain cross-entropy on long-tailed data estimates P(y | x), which
carries the training label prior pi_y. Eq. 9 predicts ``argmax_y f_y(x) - tau log pi_y``:
subtracting the log prior (tau = 1 is the Bayes-optimal rule for the balanced error) turns the
scores into estimates of the balanced posterior. Nothing is retrained: only the logits of a
bank (its own head, or any stage-2 classifier's) are shifted, and tau is picked on val, where
the paper leaves the choice to the user. These are pure functions; the stage-2 classifier that
applies them to a bank is wired in by the classifier registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from features.arrays import float_matrix, label_vector
from features.errors import FeaturesError

# tau in {0, 0.25, ..., 2}: 0 keeps the logits, 1 is the paper's choice for the balanced error.
TAU_GRID: tuple[float, ...] = tuple(0.25 * step for step in range(9))


def log_label_prior(class_counts: Any) -> np.ndarray:
    """log pi_y with pi_y = n_y / N, the training label frequencies.

    Args:
        class_counts: ``[C]`` training images per class (array-like of integers).

    Returns:
        ``[C]`` float64 log frequencies.

    Raises:
        FeaturesError: not a non-empty vector of positive counts (a class without training
            images has log pi = -inf: its logits could never be adjusted).
    """
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise FeaturesError(f"class_counts: expected a non-empty integer vector [C], got "
                            f"{counts.dtype} {counts.shape}")
    empty = np.flatnonzero(counts <= 0).tolist()
    if empty:
        raise FeaturesError(f"class_counts: classes {empty} have no training images, so log "
                            "pi_y is -inf; logit adjustment needs every class in the train split")
    counts = counts.astype(np.float64)
    return np.log(counts / counts.sum())


def adjust_logits(logits: Any, class_counts: Any, tau: float = 1.0) -> Any:
    """Eq. 9's scores ``f_y(x) - tau log pi_y``.

    Args:
        logits: ``[N, C]`` logits f(x), a numpy array or a torch tensor.
        class_counts: ``[C]`` training images per class.
        tau: the scale of the adjustment (0 returns the logits unchanged in value).

    Returns:
        ``[N, C]`` adjusted logits of the same kind (numpy / torch), dtype and device.

    Raises:
        FeaturesError: counts that are not positive, or logits whose width is not C.
    """
    log_prior = log_label_prior(class_counts)
    if logits.ndim != 2 or logits.shape[1] != log_prior.size:
        raise FeaturesError(f"logits: expected [N, {log_prior.size}] (one column per class), "
                            f"got {tuple(logits.shape)}")
    if isinstance(logits, np.ndarray):
        return logits - (tau * log_prior).astype(logits.dtype)
    # a torch tensor: the shift goes to the logits' device and dtype (gradients pass through)
    shift = tau * log_prior
    return logits - logits.new_tensor(shift)


@dataclass(frozen=True)
class TauChoice:
    """The tau that val chose, and what each candidate scored.

    Attributes:
        tau: the chosen tau.
        val_accuracy: its balanced (mean per-class) val accuracy.
        accuracies: each candidate tau mapped to its balanced val accuracy, tau ascending.
    """

    tau: float
    val_accuracy: float
    accuracies: dict[float, float]


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the share of their rows ranked first.

    Args:
        scores: ``[N, C]`` scores.
        labels: ``[N]`` int64 classes.

    Returns:
        1 minus the balanced error of Menon et al. (on a balanced split, the accuracy).
    """
    hits = scores.argmax(axis=1) == labels
    classes = np.unique(labels)
    return float(np.mean([hits[labels == label].mean() for label in classes]))


def choose_tau(
    val_logits: Any,
    val_labels: Any,
    class_counts: Any,
    tau_grid: tuple[float, ...] = TAU_GRID,
) -> TauChoice:
    """The tau of ``tau_grid`` whose adjusted val logits have the best balanced accuracy.

    Ties go to the smaller tau (the smaller change to the classifier), as for tau-norm.

    Args:
        val_logits: ``[N, C]`` logits of the balanced val split.
        val_labels: ``[N]`` integer classes of those rows.
        class_counts: ``[C]`` training images per class (the prior is the train split's).
        tau_grid: candidate taus, each finite and >= 0.

    Returns:
        The chosen tau with every candidate's val score.

    Raises:
        FeaturesError: an empty split or grid, a negative or non-finite tau, or inputs of the
            wrong shape.
    """
    taus = sorted(set(float(tau) for tau in tau_grid))
    if not taus or any(not np.isfinite(tau) or tau < 0 for tau in taus):
        raise FeaturesError(f"tau_grid: expected finite taus >= 0, got {list(tau_grid)}")
    num_classes = log_label_prior(class_counts).size
    logits = float_matrix(val_logits, "val_logits", width=num_classes)
    if len(logits) == 0:
        raise FeaturesError("val_logits: the val split has no rows to choose tau on")
    labels = label_vector(val_labels, "val_labels", len(logits), num_classes)
    accuracies = {tau: balanced_accuracy(adjust_logits(logits, class_counts, tau), labels)
                  for tau in taus}
    best = max(taus, key=lambda tau: (accuracies[tau], -tau))
    return TauChoice(tau=best, val_accuracy=accuracies[best], accuracies=accuracies)
