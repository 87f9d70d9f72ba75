"""Data-parallel training across processes (``torchrun``): which rank this is, and what ranks share.

One process per device. The training loader of every rank walks the same global epoch order
and takes its slice of each global batch (see :mod:`pipeline.data.loaders`), gradients are
averaged by :class:`~torch.nn.parallel.DistributedDataParallel`, queues all-gather their keys
(:mod:`pipeline.methods.distributed`), and rank 0 alone writes checkpoints and outputs. Every
rank evaluates the whole val split itself: it is small, and this keeps every rank's best-epoch
decision identical without communication.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from pipeline.errors import PipelineError

_BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Rank:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: global rank, 0 .. world_size - 1.
        world_size: number of processes.
        local_rank: rank on this machine (picks the CUDA device).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, outputs and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1


def rank_from_environment(environ: dict[str, str] | None = None) -> Rank:
    """The rank ``torchrun`` announced through ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.

    Args:
        environ: the environment to read (``os.environ`` when ``None``).

    Returns:
        ``Rank()`` (a single process) when ``WORLD_SIZE`` is unset.

    Raises:
        PipelineError: the variables are not integers or are inconsistent.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return Rank()
    try:
        world_size = int(environ["WORLD_SIZE"])
        rank = int(environ.get("RANK", "0"))
        local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise PipelineError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be integers; launch with torchrun, which "
            "sets them"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise PipelineError(
            f"RANK={rank} does not fit WORLD_SIZE={world_size} (LOCAL_RANK={local_rank}); "
            "launch with torchrun, which sets them"
        )
    return Rank(rank=rank, world_size=world_size, local_rank=local_rank)


def start_process_group(rank: Rank, device: torch.device) -> None:
    """Join the process group ``torchrun`` prepared (NCCL on CUDA, gloo on the CPU).

    Does nothing for a single process or when the group already exists.
    """
    if not rank.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=rank.rank, world_size=rank.world_size)


def stop_process_group() -> None:
    """Leave the process group, if any (after the last collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in the current group (1 when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_process() -> bool:
    """Rank 0, or the only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum of ``tensor`` over all ranks (unchanged for a single process)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_batchnorm_statistics(module: nn.Module) -> None:
    """Average BatchNorm running means and variances over ranks.

    Each rank normalises its own slice of the batch, so the running statistics drift apart;
    averaging them once per epoch makes every rank evaluate and checkpoint the same network.
    (With CUDA, ``train.sync_batchnorm`` uses SyncBatchNorm and the averages already agree.)
    """
    size = world_size()
    if size == 1:
        return
    for layer in module.modules():
        if isinstance(layer, _BATCHNORM_TYPES) and layer.track_running_stats:
            for buffer in (layer.running_mean, layer.running_var):
                if buffer is not None:
                    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
                    buffer.div_(size)


def wrap_for_data_parallel(
    module: nn.Module, device: torch.device, *, sync_batchnorm: bool
) -> nn.Module:
    """``module`` inside DistributedDataParallel (itself when not distributed).

    Buffers are not broadcast each step: queues are identical on every rank by construction
    (they enqueue the all-gathered batch) and BatchNorm statistics are averaged per epoch, so
    broadcasting a 16k-key queue every step would only cost bandwidth.

    Args:
        module: a method whose ``forward`` is its training step (its ``skips_parameters``
            turns on DDP's search for parameters a step did not use).
        device: this rank's device.
        sync_batchnorm: convert BatchNorm to SyncBatchNorm (CUDA only; torch has no CPU
            implementation).
    """
    if world_size() == 1:
        return module
    if sync_batchnorm and device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.12 renamed the switch; syncing once at construction is harmless here because
    # every rank builds the same seeded method.
    no_buffer_sync = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        else {"broadcast_buffers": False}
    )
    return ddp(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=bool(getattr(module, "skips_parameters", False)),
        **no_buffer_sync,
    )
