"""The engine's own failure: training diverged."""

from __future__ import annotations

from pipeline.errors import PipelineError


class NonFiniteError(PipelineError):
    """A loss or gradient became NaN or infinite; the optimiser step was not taken.

    Attributes:
        epoch: 0-based epoch of the failing iteration.
        step: 0-based iteration within that epoch.
    """

    def __init__(self, message: str, *, epoch: int, step: int) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.step = step
