"""The exception type of the stage layer, and the set of errors the CLI shows as one line."""

from features.errors import FeaturesError
from pipeline.errors import PipelineError


class StageError(Exception):
    """Bad input at the stage level: params.yaml, missing upstream outputs, ...

    The message is one line naming the file or key and how to fix it.
    """


USER_ERRORS: tuple[type[Exception], ...] = (StageError, PipelineError, FeaturesError)
"""Errors caused by the user's input: printed as one line, no traceback (unless --debug)."""
