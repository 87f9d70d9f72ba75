"""What methods with queues need from torch.distributed: the rows of every rank."""

from __future__ import annotations

import torch
from torch import Tensor


def gather_from_all_ranks(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` over all distributed ranks (itself when not distributed).

    Queues of keys (PaCo, GML) enqueue the whole global batch, as the official multi-GPU code
    does, so every rank keeps the same queue.

    Args:
        tensor: ``[B, ...]`` this rank's rows (every rank must pass the same B).

    Returns:
        ``[world_size * B, ...]`` rows of every rank, in rank order (no gradient).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)
