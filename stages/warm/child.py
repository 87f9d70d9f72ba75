"""The forked child of the warm server: it becomes the client's command and never returns
into the server's loop."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
import tempfile
import threading
from typing import NoReturn

from stages.warm.protocol import FORWARDED_SIGNALS, GROUP_SIGNALS, OWN_PACKAGES, receive_message


def run_child(conn: socket.socket, request: dict, fds: list[int], target: str,
              stdio: tuple[tuple[str, str], ...], inherited: list[socket.socket]) -> NoReturn:
    """Become the client's command: its session, descriptors, directory, environment, path,
    signals; run the target; exit with its status. Never returns into the server's loop.

    Args:
        conn: the client's connection (its forwarded signals arrive here).
        request: the client's request (`stages.warm.client.client_request`).
        fds: the client's stdin, stdout and stderr.
        target: ``module:attribute`` of the callable to run.
        stdio: (encoding, errors) of the server's stdin, stdout and stderr.
        inherited: the server's sockets, which the command must not hold.
    """
    code = 1
    try:
        _become_client(request, fds, stdio, inherited)
        threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
        code = _call(target)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not go back
        import traceback

        traceback.print_exc()
    finally:
        _finish(code)


def _become_client(request: dict, fds: list[int], stdio: tuple[tuple[str, str], ...],
                   inherited: list[socket.socket]) -> None:
    # its own session: the server's terminal signals do not reach it, the client's are
    # forwarded (GROUP_SIGNALS to this group, as a terminal would send them)
    os.setsid()
    signal.set_wakeup_fd(-1)
    ignored = set(request.get("ignored", []))
    for number in (signal.SIGCHLD, *FORWARDED_SIGNALS):
        if number in ignored:
            signal.signal(number, signal.SIG_IGN)
        elif number == signal.SIGINT:
            signal.signal(number, signal.default_int_handler)
        else:
            signal.signal(number, signal.SIG_DFL)
    for sock in inherited:
        sock.close()
    for target_fd, fd in enumerate(fds):
        os.dup2(fd, target_fd)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    _reopen_stdio(stdio)
    tempfile.tempdir = None  # found again from this environment's TMPDIR
    sys.argv = list(request["argv"])
    sys.path[:] = request["path"]
    for name in [name for name in sys.modules if name.split(".")[0] in OWN_PACKAGES]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _reopen_stdio(stdio: tuple[tuple[str, str], ...]) -> None:
    """Text streams over the client's descriptors, encoded and buffered as Python does for a
    fresh process: stdout line-buffered on a terminal, stderr always, both written through
    under PYTHONUNBUFFERED."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    (in_encoding, in_errors), (out_encoding, out_errors), (err_encoding, _) = stdio
    sys.stdin = sys.__stdin__ = open(  # noqa: SIM115
        0, encoding=in_encoding, errors=in_errors, closefd=False)
    sys.stdout = sys.__stdout__ = open(  # noqa: SIM115
        1, "w", encoding=out_encoding, errors=out_errors, closefd=False,
        buffering=1 if os.isatty(1) or unbuffered else -1)
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", encoding=err_encoding, errors="backslashreplace", closefd=False, buffering=1)
    if unbuffered:
        sys.stdout.reconfigure(write_through=True)
        sys.stderr.reconfigure(write_through=True)


def _watch_client(conn: socket.socket) -> None:
    """Pass on the client's signals; die with the client if it goes away."""
    while True:
        try:
            message, _ = receive_message(conn)
        except OSError:
            message = None
        if message is None:
            os.kill(os.getpid(), signal.SIGKILL)
        number = int(message["signal"])
        if number in GROUP_SIGNALS:
            os.killpg(os.getpid(), number)  # this child leads its own group (setsid)
        else:
            os.kill(os.getpid(), number)


def _call(target: str) -> int:
    """Run ``module:attribute``; its exit status as a cold interpreter would give it."""
    module_name, attribute = target.split(":")
    try:
        getattr(importlib.import_module(module_name), attribute)()
    except SystemExit as stop:
        if stop.code is None:
            return 0
        if isinstance(stop.code, int):
            return stop.code
        print(stop.code, file=sys.stderr)
        return 1
    return 0


def _finish(code: int) -> NoReturn:
    """Exit as an interpreter does: atexit hooks, flushed streams; then leave at once (no
    return into the server's code, no second run of its cleanup)."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
