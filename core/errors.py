"""The root of every error tailbank raises for bad user input.

Each layer keeps its own subclass (`pipeline.errors.PipelineError`,
`features.errors.FeaturesError`, `stages.errors.StageError`), so a caller can still tell who
refused the input; the CLI catches the root and prints the message as one line.
"""


class TailbankError(Exception):
    """Bad user input: the message is one line that names the file or key at fault and says
    how to fix it; the CLI prints it as is, without a traceback."""
