"""A FIFO queue of labelled contrast keys, MoCo-style, for PaCo (Cui et al., ICCV 2021).

One ring of K slots of L2-normalised key rows and their labels. Slots are written in order
from slot 0, so until the ring is full the written slots are exactly ``[0, filled)``; a
filled-count buffer says which slots hold a key, so never-written slots can be masked out of
the loss instead of contrasting against made-up keys (the official code fills the queue with
random vectors and random labels at the start).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LabelledKeyQueue(nn.Module):
    """A ring of ``K`` key rows with their class labels.

    Persistent buffers (in ``state_dict``, so a resumed run continues the same queue):
    ``keys [K, D]`` float32, ``labels [K]`` int64, ``pointer`` (scalar int64, the next slot to
    overwrite) and ``filled`` (scalar int64, slots written so far, at most K).
    """

    def __init__(self, size: int, key_dim: int) -> None:
        """An empty queue.

        Args:
            size: K, the number of slots (at least 1).
            key_dim: D, the width of a key row.
        """
        super().__init__()
        self.register_buffer("keys", torch.zeros(size, key_dim))
        self.register_buffer("labels", torch.zeros(size, dtype=torch.int64))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.int64))
        self.register_buffer("filled", torch.zeros((), dtype=torch.int64))

    @property
    def size(self) -> int:
        """K, the number of slots."""
        return self.keys.shape[0]

    def valid(self) -> Tensor:
        """``[K]`` bool, True for the slots that hold a key."""
        return torch.arange(self.size, device=self.keys.device) < self.filled

    @torch.no_grad()
    def push(self, keys: Tensor, labels: Tensor) -> None:
        """Enqueue a batch, overwriting the oldest slots (any batch size, divisor of K or not).

        The result is that of n single-row pushes: a batch of more than K rows leaves its
        last K rows, in the slots they would have reached.

        Args:
            keys: ``[n, D]`` rows to store.
            labels: ``[n]`` int64 classes of the rows.
        """
        count = keys.shape[0]
        kept = min(count, self.size)
        offsets = torch.arange(count - kept, count, device=self.keys.device)
        slots = (self.pointer + offsets) % self.size
        self.keys[slots] = keys[-kept:].to(self.keys.dtype)
        self.labels[slots] = labels[-kept:].to(torch.int64)
        self.pointer.copy_((self.pointer + count) % self.size)
        self.filled.copy_(torch.clamp(self.filled + count, max=self.size))
