"""The one exception type the bank library raises for bad user input."""


class FeaturesError(Exception):
    """Bad input to the bank library: a missing or foreign bank, mismatched shapes, ...

    The message is one line that names the file or key at fault and says how to fix it;
    the CLI prints it as is, without a traceback.
    """
