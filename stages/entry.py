"""The ``tailbank`` console script: hand the command to a warm server if one is named, else
run it here.

Only the standard library is imported before that choice, so a warm command starts in a
fraction of a second (``stages.warm``).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run ``tailbank`` with this process's arguments, warm when ``TAILBANK_WARM`` names a
    server (``tailbank warm`` itself always runs here)."""
    from stages.warm import SOCKET_ENV, delegate

    socket_path = os.environ.get(SOCKET_ENV)
    if socket_path and sys.argv[1:2] != ["warm"]:
        code = delegate(socket_path, sys.argv)
        if code is not None:
            sys.exit(code)
    from stages.cli import app

    app()
