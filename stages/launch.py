"""Start a stage's data-parallel processes: ``train.processes > 1`` relaunches under torchrun.

A user (or ``dvc repro``) runs the same ``tailbank pretrain --method M`` whether one process
or eight train; when params ask for more than one and this process was not itself started by
torchrun, it starts ``torch.distributed.run --standalone`` with the same command line and
waits for it. Multi-node jobs launch torchrun themselves (see the README): the stage then sees
``WORLD_SIZE`` and trains as the rank it was given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

from stages.errors import StageError


def inside_torchrun() -> bool:
    """Whether torchrun (or a cluster launcher with its variables) started this process."""
    return "WORLD_SIZE" in os.environ


def check_global_batch(batch_size: int, processes: int, method: str) -> None:
    """Every rank takes an equal slice of the global batch: refuse a batch they cannot share."""
    if batch_size % processes:
        raise StageError(
            f"params.yaml: train.batch_size {batch_size} of method '{method}' is not divisible "
            f"by train.processes {processes}; make it a multiple (it is the global batch)"
        )


def torchrun_command(processes: int, stage_args: Sequence[str]) -> list[str]:
    """The command that runs ``tailbank <stage_args>`` as ``processes`` local ranks."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "stages.cli",
        *stage_args,
    ]


def run_under_torchrun(processes: int, stage_args: Sequence[str]) -> int:
    """Run the stage as ``processes`` ranks on this machine; returns torchrun's exit code.

    ``OMP_NUM_THREADS`` is split between the ranks unless the user set it, so that CPU ranks do
    not oversubscribe the cores.
    """
    environment = dict(os.environ)
    if "OMP_NUM_THREADS" not in environment:
        environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    completed = subprocess.run(torchrun_command(processes, stage_args), env=environment)
    return completed.returncode
