"""Commands for a warm server in tests/stages/test_warm.py (``serve(target=...:main)``):
``main`` runs the one named by ``sys.argv[1]`` with the rest of the arguments."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

# stages.warm.OWN_PACKAGES, written again: importing it would put modules of `stages` in
# sys.modules, which is what `echo` reports
OWN_PACKAGES = ("core", "features", "pipeline", "stages")


def echo(code: str) -> None:
    """Print what the command sees of its client; exit with ``code``."""
    print(json.dumps({
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "probe": os.environ.get("PROBE"),
        "set_by_import": os.environ.get("OMP_TAILBANK_TEST"),
        "stdin": sys.stdin.read(),
        "umask": _umask(),
        "path": sys.path,
        "session_leader": os.getsid(0) == os.getpid(),
        "own_modules": sorted(name for name in sys.modules
                              if name.split(".")[0] in OWN_PACKAGES),
    }))
    print("to stderr", file=sys.stderr)
    sys.exit(int(code))


def await_signal(pid_file: str) -> None:
    """Write the pid, then wait for SIGTERM or SIGINT; exit 7 naming it (0 if none comes)."""

    def stop(number: int, _frame: object) -> None:
        print(signal.Signals(number).name, flush=True)
        sys.exit(7)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def die_by(signal_number: str) -> None:
    """Kill this command with a signal (its default action)."""
    if int(signal_number) != signal.SIGKILL:  # SIGKILL has no handler to reset
        signal.signal(int(signal_number), signal.SIG_DFL)
    os.kill(os.getpid(), int(signal_number))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main() -> None:
    """Dispatch on ``sys.argv[1]``."""
    {"echo": echo, "await_signal": await_signal, "die_by": die_by}[sys.argv[1]](*sys.argv[2:])
