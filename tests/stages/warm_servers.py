"""Warm servers (`stages.warm`) for the tests: start one, run a client through it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from stages.warm import PRELOAD
from stages.warm.command import await_listening, short_temp_root
from tests.stages.conftest import REPO

# A client that exits 99 where `stages.warm.delegate` says the command must run cold.
CLIENT = ("import sys; from stages.warm import delegate; "
          "code = delegate(sys.argv[1], ['tailbank', *sys.argv[2:]]); "
          "sys.exit(99 if code is None else code)")
COLD = 99


def socket_path() -> Path:
    """A socket path in a fresh folder, short enough for a Unix socket wherever TMPDIR is."""
    return Path(tempfile.mkdtemp(prefix="tbw-", dir=short_temp_root())) / "s.sock"


def start(path: Path, target: str, preload: Sequence[str] = PRELOAD,
          idle_seconds: float = 3600) -> subprocess.Popen:
    """A server at ``path`` running ``target`` (``module:callable``) per command; returns once
    its socket exists (clients then wait in its backlog until it has imported ``preload``)."""
    code = (f"from stages.warm import serve; serve({str(path)!r}, {idle_seconds}, "
            f"target={target!r}, preload={tuple(preload)!r})")
    server = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    await_listening(server, path)
    return server


def client(path: Path, *args: str, **popen) -> subprocess.Popen:
    """A client of the server at ``path`` with ``args`` after the program name (`CLIENT`)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **popen.pop("env", {})}
    return subprocess.Popen([sys.executable, "-c", CLIENT, str(path), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def shared_socket(target: str = "stages.cli:app") -> str:
    """The socket of this test process's warm server (`stages.warm`) for ``target``, started
    on first use and stopped when the process exits.

    The DVC projects' stage commands run through the one for the CLI: each starts in a fork of
    a process that has imported torch, scikit-learn and scipy instead of paying ~6 s of
    imports, about 130 times in the suite. The forked command runs the code on disk and writes
    the bytes a cold one does (tests/stages/test_warm.py checks both, and the cold start).
    """
    if target not in _SERVERS:
        path = socket_path()
        server = start(path, target)
        atexit.register(_stop, server, path)
        _SERVERS[target] = str(path)
    return _SERVERS[target]


def run_to_end(target: str, *args: str, cwd: Path) -> tuple[int, str]:
    """``args`` run in ``cwd`` through this process's server for ``target`` (`shared_socket`):
    the exit status and stderr."""
    process = client(Path(shared_socket(target)), *args, cwd=cwd)
    _, stderr = process.communicate()
    return process.returncode, stderr


_SERVERS: dict[str, str] = {}


def _stop(server: subprocess.Popen, path: Path) -> None:
    server.terminate()
    server.wait()
    shutil.rmtree(path.parent, ignore_errors=True)
