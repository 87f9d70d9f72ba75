"""The exception types the learning library raises: bad user input, and a diverged training."""

from __future__ import annotations

from core.constraints import ConfigFieldError
from core.errors import TailbankError


class PipelineError(TailbankError):
    """Bad input to the learning library: a missing dataset root, an unknown name, ...

    The message is one line that names the file or key at fault and says how to fix it;
    the CLI prints it as is, without a traceback.
    """


class ConfigError(ConfigFieldError, PipelineError):
    """A config of this library got a value its declared constraints refuse (see
    `core.constraints`); the params layer re-states it with the params key."""


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
