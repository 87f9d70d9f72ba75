"""Mixed-precision training (``train.precision``): autocast of the forward pass, fp16 scaling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from pipeline.errors import PipelineError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class MixedPrecision:
    """How one run computes its steps: fp32, or bf16 / fp16 autocast.

    bf16 keeps fp32's exponent range, so it needs no loss scaling and also runs on the CPU;
    fp16 needs a gradient scaler (steps whose scaled gradients overflow are skipped, as
    torch's GradScaler does) and is CUDA-only here. Weights, optimiser state and the feature
    banks stay fp32 either way.

    Args:
        precision: "fp32", "bf16" or "fp16".
        device: where the run trains.

    Raises:
        PipelineError: fp16 asked for without CUDA.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision == "fp16" and device.type != "cuda":
            raise PipelineError(
                "train.precision fp16 needs a CUDA device (it relies on loss scaling); "
                "use bf16 or fp32 on the CPU"
            )
        self.dtype = _DTYPES.get(precision)
        self.device_type = device.type
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    @property
    def scales_loss(self) -> bool:
        """Whether overflowing steps are expected and skipped rather than errors."""
        return self.scaler is not None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass of a training step (a no-op in fp32)."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of the (scaled, under fp16) loss."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring fp16-scaled gradients back to their true size before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser step (skipped by the scaler when fp16 gradients overflowed)."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state, for checkpoints (empty without one)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the scaler's state from a checkpoint."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
