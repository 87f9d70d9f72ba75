"""Tests of the seeded row orders used to train classifiers on a bank."""

from __future__ import annotations

import pytest
import torch

from features.errors import FeaturesError
from features.sampling import class_balanced_order, instance_order


def test_instance_order_is_a_seeded_permutation() -> None:
    first = instance_order(50, torch.Generator().manual_seed(3))
    again = instance_order(50, torch.Generator().manual_seed(3))
    other = instance_order(50, torch.Generator().manual_seed(4))
    assert sorted(first.tolist()) == list(range(50))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_class_balanced_order_visits_classes_uniformly() -> None:
    # Classes 0, 2 and 5 with 1000, 50 and 2 rows (a class without rows, 1, is never drawn).
    labels = torch.cat([torch.zeros(1000), torch.full((50,), 2), torch.full((2,), 5)]).long()
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    order = class_balanced_order(labels, 30_000, torch.Generator().manual_seed(1))
    drawn = torch.bincount(labels[order], minlength=6).double() / len(order)
    assert drawn[[1, 3, 4]].sum() == 0
    assert torch.allclose(drawn[[0, 2, 5]], torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)
    # Within the rare class both of its rows are drawn about equally often.
    rare_rows = torch.nonzero(labels == 5).flatten()
    rare_draws = torch.stack([(order == row).sum() for row in rare_rows]).double()
    assert torch.allclose(
        rare_draws / rare_draws.sum(), torch.full((2,), 0.5, dtype=torch.float64), atol=0.05
    )


def test_class_balanced_order_is_seeded() -> None:
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    first = class_balanced_order(labels, 100, torch.Generator().manual_seed(9))
    again = class_balanced_order(labels, 100, torch.Generator().manual_seed(9))
    assert torch.equal(first, again)
    assert first.min() >= 0 and first.max() < len(labels)


def test_class_balanced_order_rejects_empty_labels() -> None:
    with pytest.raises(FeaturesError):
        class_balanced_order(torch.zeros(0, dtype=torch.long), 5, torch.Generator())
