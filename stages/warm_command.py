"""``tailbank warm``: serve in the foreground, or around one command (``stages.warm``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from stages.errors import StageError
from stages.warm import SOCKET_ENV, WarmError, check_socket_path, serve, supported

# The server binds its socket before importing; this bounds the wait for the bind only.
START_TIMEOUT_S = 60.0


def default_socket() -> Path:
    """A per-user socket in the temp folder: the same path in every shell of this user."""
    return Path(tempfile.gettempdir()) / f"tailbank-warm-{os.getuid()}.sock"


def run(command: Sequence[str], socket_path: Path | None, idle_seconds: float) -> None:
    """Serve until stopped, or run ``command`` with a server and exit with its status."""
    if not supported():
        raise StageError("tailbank warm needs Linux (fork and descriptor passing); run the "
                         "commands without it")
    if socket_path is not None:
        try:
            check_socket_path(str(socket_path))
        except WarmError as error:
            raise StageError(str(error)) from None
    if not command:
        path = socket_path or default_socket()
        print(f"tailbank: warm server at {path}; run commands with {SOCKET_ENV}={path} "
              "(Ctrl-C stops it)", file=sys.stderr, flush=True)
        try:
            serve(str(path), idle_seconds)
        except WarmError as error:
            raise StageError(str(error)) from None
        return
    with tempfile.TemporaryDirectory(prefix="tailbank-warm-") as folder:
        path = socket_path or Path(folder) / "server.sock"
        server = subprocess.Popen([sys.executable, "-m", "stages.warm", str(path),
                                   str(idle_seconds)])
        try:
            _await_listening(server, path)
            code = subprocess.call(list(command), env={**os.environ, SOCKET_ENV: str(path)})
        except FileNotFoundError:
            raise StageError(f"tailbank warm: command not found: {command[0]}") from None
        finally:
            server.terminate()
            server.wait()
    sys.exit(code)


def _await_listening(server: subprocess.Popen, path: Path) -> None:
    """Return once ``server`` accepts connections at ``path``."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StageError(f"tailbank warm: the server at {path} stopped at start "
                             f"(exit {server.returncode}); its error is above")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
            return
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise StageError(f"tailbank warm: no server listening at {path} after {START_TIMEOUT_S:.0f} s")
