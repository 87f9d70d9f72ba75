"""The one exception type the learning library raises for bad user input."""


class PipelineError(Exception):
    """Bad input to the learning library: a missing dataset root, an unknown name, ...

    The message is one line that names the file or key at fault and says how to fix it;
    the CLI prints it as is, without a traceback.
    """
