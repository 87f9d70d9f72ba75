"""Atomic training checkpoints: weights, optimiser, progress and every random stream."""

from __future__ import annotations

import random
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.atomic import save_torch_atomically
from pipeline.engine.config import TrainConfig
from pipeline.engine.records import EpochRecord, TrainingProgress, cpu_copy
from pipeline.errors import PipelineError

CHECKPOINT_FORMAT = "tailbank-train-checkpoint/1"


def save_checkpoint(
    path: Path,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: TrainingProgress,
    config: TrainConfig,
    *,
    precision: Any = None,
) -> None:
    """Write everything needed to continue training after ``progress.next_epoch - 1``.

    Args:
        path: destination; replaced atomically, so a crash leaves the previous file intact.
        method: the method being trained (its buffers, e.g. queues, are saved too).
        optimizer: its optimiser (momentum buffers).
        progress: history and best-on-val state so far.
        config: the recipe, checked on resume.
        precision: the run's :class:`~pipeline.engine.precision.MixedPrecision` (its fp16
            loss scale is saved).
    """
    save_torch_atomically(checkpoint_payload(method, optimizer, progress, config, precision), path)


def checkpoint_payload(
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: TrainingProgress,
    config: TrainConfig,
    precision: Any = None,
) -> dict[str, Any]:
    """What a checkpoint holds, with every tensor copied to the CPU: training may go on
    changing the live weights while the copy is being written. The best state is already a
    CPU copy that nothing changes (`TrainingProgress.finish_epoch`), so it is not copied again.
    """
    payload = cpu_copy({
        "format": CHECKPOINT_FORMAT,
        "config": asdict(config),
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "next_epoch": progress.next_epoch,
        "best_epoch": progress.best_epoch,
        "best_val_acc": progress.best_val_acc,
        "history": [asdict(record) for record in progress.history],
        "rng": capture_random_state(),
        "scaler": precision.state_dict() if precision is not None else {},
    })
    payload["best_state"] = progress.best_state
    return payload


class BackgroundCheckpointer:
    """Writes checkpoints on a background thread while the next epoch trains.

    Serialising and fsyncing a checkpoint is a fixed cost per epoch (0.06 s for ResNet-20,
    seconds for a ResNet-50 on a network file system); the training thread only pays for the
    CPU copy of the tensors. One write is in flight at a time: `save` first waits for the
    previous one, so checkpoints land in epoch order, and each is still atomic.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(self, path: Path, payload: dict[str, Any]) -> None:
        """Start writing `payload` (from `checkpoint_payload`) to `path`."""
        self.wait()
        self._thread = threading.Thread(
            target=self._write, args=(payload, path), name="tailbank-checkpoint"
        )
        self._thread.start()

    def wait(self, *, raise_error: bool = True) -> BaseException | None:
        """Block until the write in flight is on disk.

        Returns:
            The write's error when `raise_error` is False (None when it succeeded); with
            `raise_error`, the error is raised instead.
        """
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error
        return error

    def _write(self, payload: dict[str, Any], path: Path) -> None:
        try:
            save_torch_atomically(payload, path)
        except BaseException as error:  # handed to the training thread by `wait`
            self._error = error


def load_checkpoint(
    path: Path,
    method: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    *,
    precision: Any = None,
) -> TrainingProgress:
    """Restore ``method``, ``optimizer`` and the global random streams from ``path``.

    Returns:
        The progress saved with the checkpoint.

    Raises:
        PipelineError: the file is unreadable, foreign, from another recipe or another method.
    """
    payload = read_payload(path)
    if payload.get("config") != asdict(config):
        raise PipelineError(
            f"{path}: checkpoint was written with a different training recipe; delete it to "
            "train from scratch, or restore the recipe it was written with"
        )
    try:
        method.load_state_dict(payload["method"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        reason = str(error).splitlines()[0]
        raise PipelineError(
            f"{path}: checkpoint does not fit this method ({reason}); delete it to train "
            "from scratch"
        ) from None
    restore_random_state(payload["rng"])
    if precision is not None:
        precision.load_state_dict(payload.get("scaler", {}))
    return TrainingProgress(
        next_epoch=payload["next_epoch"],
        best_epoch=payload["best_epoch"],
        best_val_acc=payload["best_val_acc"],
        best_state=payload["best_state"],
        history=[EpochRecord(**record) for record in payload["history"]],
    )


def read_payload(
    path: Path,
    expected_format: str = CHECKPOINT_FORMAT,
    *,
    what: str = "training checkpoint",
    fix: str = "delete it to train from scratch",
) -> dict[str, Any]:
    """Load a tailbank torch file without unpickling arbitrary objects, checking its format.

    Args:
        path: the file.
        expected_format: the ``format`` entry the payload must carry.
        what: what the file is, for the error message.
        fix: how the user gets a good file, for the error message.

    Raises:
        PipelineError: one line naming the file when it is unreadable or of another format.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a truncated zip or pickle
        raise PipelineError(
            f"{path}: unreadable {what} ({type(error).__name__}); {fix}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise PipelineError(
            f"{path}: not a tailbank {what} ({expected_format} expected); {fix}"
        )
    return payload


def capture_random_state() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python random states, in types ``weights_only`` loads."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_random_state` (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
