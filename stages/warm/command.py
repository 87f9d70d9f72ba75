"""``tailbank warm``: serve in the foreground, or around one command (``stages.warm``)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from stages.errors import StageError
from stages.warm import SOCKET_ENV, WarmError, check_socket_path, default_socket, serve, supported

# The server's socket appears once it listens; this bounds the wait for that only.
START_TIMEOUT_S = 60.0


def run(command: Sequence[str], socket_path: Path | None, idle_seconds: float) -> None:
    """Serve until stopped, or run ``command`` with a server and exit as it did."""
    if not supported():
        raise StageError("tailbank warm needs Linux (fork and descriptor passing); run the "
                         "commands without it")
    try:
        if socket_path is not None:
            check_socket_path(str(socket_path))
        if not command:
            path = str(socket_path) if socket_path else default_socket()
            print(f"tailbank: warm server at {path}; run commands with {SOCKET_ENV}={path} "
                  "(Ctrl-C stops it)", file=sys.stderr, flush=True)
            serve(path, idle_seconds)
            return
    except WarmError as error:
        raise StageError(str(error)) from None
    with tempfile.TemporaryDirectory(prefix="tailbank-warm-", dir=short_temp_root()) as folder:
        path = socket_path or Path(folder) / "server.sock"
        server = subprocess.Popen([sys.executable, "-m", "stages.warm", str(path),
                                   str(idle_seconds)])
        try:
            await_listening(server, path)
            code = _run_command(command, {**os.environ, SOCKET_ENV: str(path)})
        finally:
            server.terminate()
            server.wait()
    if code < 0:  # killed by a signal: end the same way, as the caller would have seen
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def short_temp_root() -> str | None:
    """Where a temporary socket's folder goes: the temp folder, or /tmp when the temp folder's
    path is too long for a Unix socket path (`check_socket_path`)."""
    if len(os.fsencode(tempfile.gettempdir())) > 50 and os.path.isdir("/tmp"):
        return "/tmp"
    return None


def _run_command(command: Sequence[str], env: dict[str, str]) -> int:
    """Run ``command``; its return code (negative: the signal that killed it).

    Ctrl-C reaches the command from the terminal (same process group), so it is ignored
    here; SIGTERM and SIGHUP sent to this process are passed on.
    """
    try:
        process = subprocess.Popen(list(command), env=env)
    except FileNotFoundError:
        raise StageError(f"tailbank warm: command not found: {command[0]}") from None
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    for number in (signal.SIGTERM, signal.SIGHUP):
        previous[number] = signal.signal(number, lambda n, _: process.send_signal(n))
    try:
        return process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def await_listening(server: subprocess.Popen, path: Path) -> None:
    """Return once ``server`` (a `stages.warm.serve` process) accepts connections at ``path``:
    its socket appears there only once it listens."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StageError(f"tailbank warm: the server at {path} stopped at start "
                             f"(exit {server.returncode}); its error is above")
        if path.exists() and _is_socket(path):
            return
        time.sleep(0.05)
    raise StageError(f"tailbank warm: no server listening at {path} after {START_TIMEOUT_S:.0f} s")


def _is_socket(path: Path) -> bool:
    return stat.S_ISSOCK(path.lstat().st_mode)
