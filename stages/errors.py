"""The exception type of the stage layer, and the set of errors the CLI shows as one line."""

from core.errors import TailbankError


class StageError(TailbankError):
    """Bad input at the stage level: params.yaml, missing upstream outputs, ...

    The message is one line naming the file or key and how to fix it.
    """


USER_ERRORS: tuple[type[Exception], ...] = (TailbankError,)
"""Errors caused by the user's input (`StageError`, `pipeline.errors.PipelineError`,
`features.errors.FeaturesError`, all `core.errors.TailbankError`): printed as one line, no
traceback (unless --debug)."""
