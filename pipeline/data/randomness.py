"""Random streams that are pure functions of (seed, epoch), so a resumed run replays its epochs."""

from __future__ import annotations

import numpy as np
import torch

# Independent streams drawn from the same (seed, epoch): changing how one is consumed never
# shifts the numbers of another.
ORDER_STREAM = 0
AUGMENT_STREAM = 1
WORKER_STREAM = 2
# Extra views of each training image (PaCo's key view): drawn from the raw image apart from
# the query's AUGMENT_STREAM, so asking for them leaves the query views as they were.
VIEW_STREAM = 3


def epoch_rng(seed: int, epoch: int, stream: int = ORDER_STREAM) -> np.random.Generator:
    """A numpy generator determined by (seed, epoch, stream) alone.

    Args:
        seed: the run's seed (non-negative).
        epoch: the epoch number (non-negative).
        stream: which of the independent streams of this epoch.

    Returns:
        A fresh ``np.random.Generator``.
    """
    return np.random.default_rng(np.random.SeedSequence((seed, epoch, stream)))


def epoch_torch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit integer seed for torch, determined by (seed, epoch, stream) alone."""
    low, high = np.random.SeedSequence((seed, epoch, stream)).generate_state(2, dtype=np.uint32)
    return (int(high) & 0x7FFFFFFF) << 32 | int(low)


def epoch_torch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A CPU ``torch.Generator`` determined by (seed, epoch, stream) alone.

    Random numbers are always drawn on the CPU (and moved afterwards) so that CPU and CUDA
    runs see the same augmentations.
    """
    generator = torch.Generator(device="cpu")
    generator.manual_seed(epoch_torch_seed(seed, epoch, stream))
    return generator
