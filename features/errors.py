"""The exception types the bank library raises for bad user input."""

from core.constraints import ConfigFieldError
from core.errors import TailbankError


class FeaturesError(TailbankError):
    """Bad input to the bank library: a missing or foreign bank, mismatched shapes, ...

    The message is one line that names the file or key at fault and says how to fix it;
    the CLI prints it as is, without a traceback.
    """


class ConfigError(ConfigFieldError, FeaturesError):
    """A config of this library got a value its declared constraints refuse (see
    `core.constraints`); the params layer re-states it with the params key."""
