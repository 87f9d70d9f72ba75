"""A tiny in-memory loader with the data package's contract, and a toy data set."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

NUM_CLASSES = 3


@dataclass(frozen=True)
class FakeBatch:
    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    views: tuple[torch.Tensor, ...] = ()


class FakeLoader:
    """Batches of fixed tensors; with ``shuffle`` the order of epoch e depends on (seed, e)."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def epoch(self, epoch: int) -> Iterator[FakeBatch]:
        count = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        for start in range(0, count, self.batch_size):
            index = order[start : start + self.batch_size]
            yield FakeBatch(self.images[index], self.labels[index], index)


def toy_digits(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 greyscale images: a class-specific bright row plus noise. ``[N,1,8,8]``, ``[N]``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    images = 0.5 * torch.randn(len(labels), 1, 8, 8, generator=generator)
    images[torch.arange(len(labels)), 0, 2 * labels + 1, :] += 2.0
    return images, labels


def toy_loaders(batch_size: int = 8) -> tuple[FakeLoader, FakeLoader]:
    """A shuffled training loader (24 images) and a fixed-order val loader (12 images)."""
    train_images, train_labels = toy_digits(8, seed=1)
    val_images, val_labels = toy_digits(4, seed=2)
    return (
        FakeLoader(train_images, train_labels, batch_size, seed=5),
        FakeLoader(val_images, val_labels, batch_size, shuffle=False),
    )
