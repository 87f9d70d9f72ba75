"""Seeded orders in which a classifier on a bank visits the training rows."""

from __future__ import annotations

import torch

from features.errors import FeaturesError


def instance_order(num_rows: int, generator: torch.Generator) -> torch.Tensor:
    """Instance-balanced sampling: every row once per epoch, in a seeded random order.

    Args:
        num_rows: N, the number of training rows.
        generator: CPU generator that the order is drawn from.

    Returns:
        int64 [N], a permutation of range(N).
    """
    return torch.randperm(num_rows, generator=generator)


def class_balanced_order(
    labels: torch.Tensor, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Class-balanced sampling (Kang et al. 2020): a class uniformly, then a row of it uniformly.

    Stage 1's `pipeline.data.samplers.class_balanced_indices` draws the same way from a numpy
    generator; sharing one would change this stage's seeded orders, so each keeps its own.

    Only classes with at least one row can be drawn, so each of them is visited
    num_samples / (number of such classes) times in expectation, whatever its frequency.

    Args:
        labels: int [N], class of each training row.
        num_samples: How many row indices to draw (with replacement).
        generator: CPU generator that the draws come from.

    Returns:
        int64 [num_samples], indices into the rows.
    """
    labels = labels.detach().to("cpu", torch.int64)
    if labels.ndim != 1 or labels.numel() == 0:
        raise FeaturesError(
            f"labels: class-balanced sampling needs a non-empty [N] array, got {labels.shape}"
        )
    rows_by_class = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[rows_by_class], return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    drawn_class = torch.randint(len(classes), (num_samples,), generator=generator)
    # Uniform offset within the drawn class: floor(u * n_c) lies in [0, n_c) for u in [0, 1).
    offsets = (
        torch.rand(num_samples, generator=generator, dtype=torch.float64) * counts[drawn_class]
    ).long()
    offsets = torch.minimum(offsets, counts[drawn_class] - 1)
    return rows_by_class[starts[drawn_class] + offsets]
