"""Class-wise queues of contrast features for GML (Suh & Seo, ICML 2023, Sec. 3.3, Eq. 5).

One flat buffer of K slots is cut into C contiguous segments, one per class, of the lengths
of Eq. 5. Each segment is a FIFO ring with its own pointer and a filled-count, so slots never
written are known and can be masked out of the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.errors import ConfigError

# Sample index of a slot that holds no feature yet; dataset positions are never negative.
EMPTY_SLOT = -1


def class_queue_sizes(class_counts: Tensor, total: int, minimum: int) -> Tensor:
    """Integer queue lengths of Eq. 5, ``|Z_c| = k_m + (K - k_m * C) * p(c)``.

    The real-valued lengths sum to K exactly. They are rounded by the largest-remainder
    (Hamilton) rule: every class gets ``k_m + floor((K - k_m C) p(c))`` and the slots left
    over go one each to the classes with the largest fractional parts (ties: lower class
    index first). So the lengths sum to K exactly (never more), every class has at least
    k_m, and each length is within 1 of its real value.

    Args:
        class_counts: ``[C]`` training images per class (p(c) = n_c / sum n).
        total: K, the total number of contrast slots.
        minimum: k_m, the least length of a class queue.

    Returns:
        ``[C]`` int64 lengths.

    Raises:
        ConfigError: k_m < 1, or K < k_m * C (Eq. 5 would give negative lengths).
    """
    num_classes = class_counts.numel()
    if minimum < 1:
        raise ConfigError("GMLStudentOptions", "k_min", "must be at least 1: every class needs "
                          "a contrast sample (the paper uses 2)", minimum)
    if total < minimum * num_classes:
        raise ConfigError("GMLStudentOptions", "queue_size", f"is below k_min x classes "
                          f"({minimum} x {num_classes}); raise queue_size or lower k_min", total)
    counts = class_counts.to(torch.float64)
    shares = (total - minimum * num_classes) * counts / counts.sum()
    whole = shares.floor()
    left_over = total - minimum * num_classes - int(whole.sum().round())
    # A stable sort keeps the lower class index first among equal remainders.
    order = torch.sort(shares - whole, descending=True, stable=True).indices
    bonus = torch.zeros(num_classes, dtype=torch.int64)
    bonus[order[:left_over]] = 1
    return minimum + whole.to(torch.int64) + bonus


class ClassWiseQueue(nn.Module):
    """C FIFO rings of feature rows in one ``[K, D]`` buffer (Eq. 5 lengths).

    Persistent buffers (in ``state_dict``): ``features [K, D]``, ``sample_index [K]`` (the
    dataset position each slot came from, :data:`EMPTY_SLOT` if never written),
    ``pointer [C]`` (next slot to overwrite, relative to the segment start) and
    ``filled [C]`` (slots written so far, at most the segment length). The layout buffers
    ``sizes``, ``starts`` and ``slot_class`` follow from the constructor and are not saved.
    """

    def __init__(self, sizes: Tensor, feature_dim: int) -> None:
        """Empty rings.

        Args:
            sizes: ``[C]`` int64 segment lengths, each at least 1.
            feature_dim: D, the width of a stored row.
        """
        super().__init__()
        sizes = sizes.to(torch.int64)
        num_classes, total = sizes.numel(), int(sizes.sum())
        starts = torch.cumsum(sizes, 0) - sizes
        slot_class = torch.repeat_interleave(torch.arange(num_classes), sizes)
        self.register_buffer("sizes", sizes, persistent=False)
        self.register_buffer("starts", starts, persistent=False)
        self.register_buffer("slot_class", slot_class, persistent=False)
        self.register_buffer(
            "slot_offset", torch.arange(total) - starts[slot_class], persistent=False
        )
        self.register_buffer("features", torch.zeros(total, feature_dim))
        self.register_buffer("sample_index", torch.full((total,), EMPTY_SLOT, dtype=torch.int64))
        self.register_buffer("pointer", torch.zeros(num_classes, dtype=torch.int64))
        self.register_buffer("filled", torch.zeros(num_classes, dtype=torch.int64))

    def filled_slots(self) -> Tensor:
        """``[M]`` int64 positions of the slots that hold a feature, ordered by class."""
        return (self.slot_offset < self.filled[self.slot_class]).nonzero().flatten()

    @torch.no_grad()
    def enqueue(self, features: Tensor, labels: Tensor, sample_index: Tensor) -> None:
        """Write each row into its own class's ring, oldest entries first to go.

        Rows of one class land in batch order at that ring's pointer, wrapping inside the
        segment. When a batch holds more rows of a class than its ring has slots, only the
        latest rows are kept, exactly as writing them one by one would leave the ring.

        Args:
            features: ``[B, D]`` rows to store (detached).
            labels: ``[B]`` int64 class of each row.
            sample_index: ``[B]`` int64 dataset position of each row.
        """
        num_classes = self.sizes.numel()
        one_hot = F.one_hot(labels, num_classes)
        rank_in_class = (one_hot.cumsum(0) - 1).gather(1, labels[:, None]).flatten()
        arrivals = one_hot.sum(0)
        size = self.sizes[labels]
        # Positions are unique once the overwritten early rows are dropped, so the write is
        # deterministic on every device.
        kept = rank_in_class >= arrivals[labels] - size
        slots = self.starts[labels] + (self.pointer[labels] + rank_in_class) % size
        slots = slots[kept]
        self.features[slots] = features[kept].to(self.features.dtype)
        self.sample_index[slots] = sample_index[kept]
        self.pointer.copy_((self.pointer + arrivals) % self.sizes)
        self.filled.copy_(torch.minimum(self.filled + arrivals, self.sizes))
