"""The client side of a warm start: hand this process's command to the server, wait for its
end and leave the same way (``stages.entry`` calls `delegate` before any heavy import)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from stages.warm.protocol import (
    FORWARDED_SIGNALS,
    PROTOCOL,
    SOCKET_ENV,
    interpreter,
    peer_uid,
    receive_message,
    send_message,
    supported,
)


def current_umask() -> int:
    """This process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def ignored_signals() -> list[int]:
    """The forwarded signals this process ignores (``nohup``, a shell's background job)."""
    return [int(number) for number in FORWARDED_SIGNALS
            if signal.getsignal(number) is signal.SIG_IGN]


def client_request(argv: Sequence[str]) -> dict[str, Any]:
    """What a child needs to become this process: its command line and its state."""
    return {
        "protocol": PROTOCOL,
        "interpreter": interpreter(),
        "argv": list(argv),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "path": list(sys.path),
        "umask": current_umask(),
        "ignored": ignored_signals(),
    }


def delegate(socket_path: str, argv: Sequence[str]) -> int | None:
    """Run ``argv`` in the warm server at ``socket_path``; its exit status, or None (after
    one line on stderr saying why) when the command has to run cold in this process.

    A command killed by a signal kills this process with the same signal: the caller (DVC, a
    shell) sees what it would have seen.
    """
    if not supported():
        return _cold(f"{SOCKET_ENV} is set but a warm start needs Linux")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(socket_path)
        owner = peer_uid(conn)
        if owner != os.getuid():  # never hand our environment and streams to another user
            conn.close()
            return _cold(f"the warm server at {SOCKET_ENV}={socket_path} runs as user {owner}, "
                         "not as you")
        request = client_request(argv)
        send_message(conn, request, fds=(0, 1, 2))
        started = _next_reply(conn)
    except OSError as error:
        conn.close()
        return _cold(f"no warm server at {SOCKET_ENV}={socket_path} ({error.strerror or error})")
    if started is None or "started" not in started:
        conn.close()
        return _cold(started["cold"] if started else
                     f"the warm server at {SOCKET_ENV}={socket_path} stopped before starting "
                     "the command")
    forwarded = [number for number in FORWARDED_SIGNALS if number not in request["ignored"]]
    previous = {number: signal.signal(number, _forwarder(conn)) for number in forwarded}
    try:
        reply = _next_reply(conn)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        conn.close()
    if reply is None:
        print("tailbank: the warm server stopped before the command ended", file=sys.stderr)
        return 1
    if "signal" in reply:
        if reply["signal"] not in (signal.SIGKILL, signal.SIGSTOP):  # those have no handler
            signal.signal(reply["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), reply["signal"])
    return int(reply["exit"])


def _forwarder(conn: socket.socket):
    """A signal handler that passes the signal to the warm child."""

    def forward(number: int, _frame: object) -> None:
        try:
            send_message(conn, {"signal": number})
        except OSError:
            pass  # the child is already gone; its status is on its way

    return forward


def _next_reply(conn: socket.socket) -> dict | None:
    """The server's next message (None if it went away). A forwarded signal interrupts the
    wait only for its handler (PEP 475)."""
    try:
        reply, _ = receive_message(conn)
    except OSError:
        return None
    return reply


def _cold(reason: str) -> None:
    print(f"tailbank: running cold: {reason}", file=sys.stderr)
    return None
