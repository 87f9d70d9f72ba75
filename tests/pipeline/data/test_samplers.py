"""Instance and class-balanced orders: uniform over classes, replayable per epoch."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.data.samplers import ClassBalancedSampler, class_balanced_indices, instance_indices

# A long tail: class k has 2**(9-k) items, so instance sampling would be far from uniform.
LONG_TAIL_LABELS = np.repeat(np.arange(10), 2 ** np.arange(9, -1, -1))


def test_class_balanced_draws_classes_uniformly() -> None:
    draws = 20_000
    indices = class_balanced_indices(LONG_TAIL_LABELS, draws, np.random.default_rng(0))
    observed = np.bincount(LONG_TAIL_LABELS[indices], minlength=10)
    expected = draws / 10
    chi_square = float(((observed - expected) ** 2 / expected).sum())
    # 9 degrees of freedom: the 0.999 quantile is 27.9.
    assert chi_square < 27.9


def test_class_balanced_draws_items_uniformly_within_a_class() -> None:
    indices = class_balanced_indices(LONG_TAIL_LABELS, 20_000, np.random.default_rng(1))
    head_items = indices[LONG_TAIL_LABELS[indices] == 0]
    counts = np.bincount(head_items, minlength=512)
    # 512 head items share ~2,000 draws: every item is reachable, none dominates.
    assert counts.max() < 20 and np.count_nonzero(counts) > 480


def test_class_balanced_ignores_absent_classes_and_defaults_to_n_draws() -> None:
    labels = np.array([7, 7, 7, 2])
    indices = class_balanced_indices(labels, None, np.random.default_rng(0))
    assert len(indices) == 4 and indices.dtype == np.int64
    assert set(labels[indices].tolist()) <= {2, 7}


def test_instance_indices_is_a_permutation() -> None:
    order = instance_indices(50, np.random.default_rng(0))
    assert order.dtype == np.int64 and sorted(order.tolist()) == list(range(50))


def test_sampler_replays_an_epoch_and_changes_between_epochs() -> None:
    sampler = ClassBalancedSampler(LONG_TAIL_LABELS, num_samples=300, seed=5)
    sampler.set_epoch(2)
    epoch_two = list(sampler)
    sampler.set_epoch(3)
    epoch_three = list(sampler)
    resumed = ClassBalancedSampler(LONG_TAIL_LABELS, num_samples=300, seed=5)
    resumed.set_epoch(2)
    assert list(resumed) == epoch_two and epoch_two != epoch_three
    assert len(sampler) == 300 and len(epoch_two) == 300


def test_sampler_depends_on_its_seed() -> None:
    first = ClassBalancedSampler(LONG_TAIL_LABELS, num_samples=100, seed=0)
    second = ClassBalancedSampler(LONG_TAIL_LABELS, num_samples=100, seed=1)
    assert list(first) != list(second)


def test_sampler_drives_a_torch_dataloader() -> None:
    labels = torch.from_numpy(LONG_TAIL_LABELS)
    sampler = ClassBalancedSampler(LONG_TAIL_LABELS, num_samples=64, seed=0)
    batches = list(DataLoader(labels, batch_size=16, sampler=sampler))
    assert [len(batch) for batch in batches] == [16, 16, 16, 16]
