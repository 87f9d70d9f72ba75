"""Orders in which an epoch visits a split: plain shuffling and class-balanced sampling."""

from __future__ import annotations

import numpy as np


def instance_indices(num_items: int, rng: np.random.Generator) -> np.ndarray:
    """Instance-balanced order: every item once, shuffled.

    Args:
        num_items: N.
        rng: the source of randomness.

    Returns:
        int64 [N], a permutation of 0..N-1.
    """
    return rng.permutation(num_items).astype(np.int64)


def class_balanced_indices(
    labels: np.ndarray, num_samples: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Class-balanced sampling (Kang et al. 2020, Eq. 1 with q = 0): every draw picks a class
    uniformly among those present, then one of its items uniformly, with replacement.

    `features.sampling.class_balanced_order` draws the same way for stage 2 from a torch
    generator; the two stay apart because merging them would change one stage's random stream.

    Args:
        labels: int [N], class of each item.
        num_samples: M, draws to make; ``None`` for N.
        rng: the source of randomness.

    Returns:
        int64 [M], positions in ``labels``.
    """
    labels = np.asarray(labels)
    draws = len(labels) if num_samples is None else num_samples
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    # Grouping positions by class turns "an item of class k" into one offset into `grouped`.
    grouped = np.argsort(labels, kind="stable")
    classes, starts, sizes = np.unique(labels[grouped], return_index=True, return_counts=True)
    chosen_classes = rng.integers(0, len(classes), size=draws)
    offsets = rng.integers(0, sizes[chosen_classes])
    return grouped[starts[chosen_classes] + offsets].astype(np.int64)
