"""A warm start for ``tailbank`` commands: one server pays the imports, each command forks.

Every ``tailbank`` stage spends about 6 s importing torch, ``torch._dynamo`` (which
``torch.optim`` imports on its first optimizer), scikit-learn and scipy before a few seconds of
work on a small bank; a DAG of 42 stages pays that 42 times. ``tailbank warm`` starts a server
that imports those third-party libraries once and listens on a Unix socket. A ``tailbank``
started with ``TAILBANK_WARM=<socket>`` in its environment (``stages.entry``) connects and
hands over its command line, working directory, environment, ``sys.path``, umask and its
stdin, stdout and stderr (the descriptors themselves, so pipes, terminals and progress bars
behave as before). The server forks; the child drops every module of tailbank's own packages,
so the command imports the code on disk now, takes over the client's state and runs the CLI.

What stays the same as a cold start:
- the exit status, or the signal that killed the command (the client kills itself with it);
- SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the client are passed to the command, so its
  interrupt handlers run; a client killed outright (SIGKILL) takes the command with it;
- the bytes written: the forked child runs the same code on the same libraries, and a client
  whose import-time environment differs from the server's (thread counts, CUDA and torch
  variables, locale, Python flags: ``import_time_env``) is refused and runs cold, saying why.

The server never initialises CUDA (only importing torch, which does not), so a child can use
the GPU as a cold process would: CUDA cannot be used in a child forked after its
initialisation. Linux only: it needs ``fork`` and ``SCM_RIGHTS``.

This module imports nothing outside the standard library: the client side runs before any
third-party import.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NoReturn

SOCKET_ENV = "TAILBANK_WARM"
PROTOCOL = 1
# tailbank's own packages: a child imports them afresh, so code edited while the server runs
# is the code that runs
OWN_PACKAGES = ("core", "features", "pipeline", "stages")
# What the stages import from third parties: the server imports these once.
# tests/stages/test_warm.py checks that it covers every stage's third-party imports.
PRELOAD = (
    "numpy", "scipy.special", "scipy.stats", "yaml", "pydantic", "typer", "h5py", "faiss",
    "torch", "torch._dynamo", "torch.distributed", "torchvision", "nflows",
    "sklearn.linear_model", "sklearn.manifold", "sklearn.metrics", "matplotlib",
    "matplotlib.figure", "dvclive", "annotated_types",
)
# Environment variables that libraries read while they are imported (thread pools, CUDA and
# torch switches, locale for stdio, Python's own flags): a client must match the server on
# them, or the forked command could differ from a cold one.
IMPORT_TIME_PREFIXES = (
    "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "BLIS_", "VECLIB_", "NUMEXPR_", "CUDA_",
    "CUBLAS_", "CUDNN_", "NCCL_", "NVIDIA_", "TORCH", "PYTORCH_", "LD_", "PYTHON", "MPL",
    "MATPLOTLIB", "FAISS_", "SKLEARN_", "SCIPY_", "HDF5_", "LANG", "LC_",
)
# PYTHONPATH only shapes sys.path at start; the client's sys.path itself is sent
NOT_IMPORT_TIME = ("PYTHONPATH",)
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_HEADER = struct.Struct(">I")


class WarmError(Exception):
    """The warm server cannot start, or a client cannot use it (one line)."""


def import_time_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` that third-party imports read (``IMPORT_TIME_PREFIXES``)."""
    return {
        key: value for key, value in sorted(env.items())
        if key.startswith(IMPORT_TIME_PREFIXES) and key not in NOT_IMPORT_TIME
    }


def supported() -> bool:
    """Whether this platform can fork a warm child and pass it descriptors."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


# ---------------------------------------------------------------------------- wire format
def send_message(sock: socket.socket, message: Mapping[str, Any],
                 fds: Sequence[int] = ()) -> None:
    """One length-prefixed JSON message, with ``fds`` attached to its first byte."""
    body = json.dumps(message).encode()
    data = _HEADER.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [data], list(fds))
        data = data[sent:]
    if data:  # sendall(b"") still sends, and fails if the server has answered and closed
        sock.sendall(data)


def receive_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict | None, list[int]]:
    """The next message and the descriptors that came with it; ``(None, [])`` at end of
    stream."""
    if max_fds:
        head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
    else:
        head, fds = sock.recv(_HEADER.size), []
    head += _receive_exactly(sock, _HEADER.size - len(head)) if head else b""
    if len(head) < _HEADER.size:
        return None, list(fds)
    body = _receive_exactly(sock, _HEADER.unpack(head)[0])
    return json.loads(body), list(fds)


def _receive_exactly(sock: socket.socket, count: int) -> bytes:
    """``count`` bytes, or fewer if the stream ends first."""
    chunks: list[bytes] = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------- client
def current_umask() -> int:
    """This process's umask (reading it means setting it; it is put back at once)."""
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def interpreter() -> str:
    """This Python and its environment: the real binary and ``sys.prefix`` (two venvs share
    one binary; one venv has several names for it)."""
    return f"{os.path.realpath(sys.executable)} in {sys.prefix}"


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
        send_message(conn, client_request(argv), fds=(0, 1, 2))
    except OSError as error:
        conn.close()
        return _cold(f"no warm server at {SOCKET_ENV}={socket_path} ({error.strerror or error})")
    previous = {number: signal.signal(number, _forwarder(conn)) for number in FORWARDED_SIGNALS}
    try:
        reply = _await_reply(conn)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        conn.close()
    if reply is None:
        print("tailbank: the warm server stopped before the command ended", file=sys.stderr)
        return 1
    if "cold" in reply:
        return _cold(reply["cold"])
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


def _await_reply(conn: socket.socket) -> dict | None:
    """The server's answer: the command's status, or why it must run cold (None if the server
    went away). A forwarded signal interrupts the wait only for its handler (PEP 475)."""
    try:
        reply, _ = receive_message(conn)
    except OSError:
        return None
    return reply


def _cold(reason: str) -> None:
    print(f"tailbank: running cold: {reason}", file=sys.stderr)
    return None


# ---------------------------------------------------------------------------- server
def serve(socket_path: str, idle_seconds: float = 3600.0, target: str = "stages.cli:app",
          preload: Iterable[str] = PRELOAD) -> None:
    """Listen on ``socket_path`` and run each client's command in a forked child.

    Args:
        socket_path: the Unix socket to create (an existing live server there is an error; a
            stale file is replaced).
        idle_seconds: stop after this long with no command running and none arriving.
        target: ``module:attribute`` of the callable a child runs (the Typer app).
        preload: the modules imported before the first command.
    """
    if not supported():
        raise WarmError("tailbank warm needs Linux (fork and descriptor passing)")
    listener = _listen(socket_path)
    before = dict(os.environ)
    try:
        for name in preload:
            importlib.import_module(name)
        # some imports set variables (torch's inductor cache folder, OpenMP's fork switch):
        # a cold command would have them too, unless its own environment sets them
        set_by_imports = {key: value for key, value in os.environ.items() if key not in before}
        _serve_forever(listener, idle_seconds, target, import_time_env(before), set_by_imports)
    finally:
        listener.close()
        try:
            os.unlink(socket_path)
        except FileNotFoundError:
            pass


def check_socket_path(socket_path: str) -> None:
    """Refuse a path the kernel cannot bind (``sun_path`` holds 108 bytes)."""
    if len(os.fsencode(socket_path)) > 100:
        raise WarmError(f"{socket_path}: a Unix socket path must be under 100 bytes; "
                        "choose a shorter --socket")


def _listen(socket_path: str) -> socket.socket:
    """A listening socket at ``socket_path``, bound before the slow imports so that early
    clients wait in the backlog instead of running cold."""
    check_socket_path(socket_path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(socket_path)
    except OSError:
        pass
    else:
        raise WarmError(f"{socket_path}: a warm server is already listening there; "
                        f"use it ({SOCKET_ENV}={socket_path}) or choose another --socket")
    finally:
        probe.close()
    try:
        os.unlink(socket_path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # only this user may connect: a client chooses sys.path and the environment, that is,
        # what code runs as the server's user
        previous_mask = os.umask(0o177)
        try:
            listener.bind(socket_path)
        finally:
            os.umask(previous_mask)
    except OSError as error:
        listener.close()
        raise WarmError(f"{socket_path}: cannot listen there ({error.strerror}); "
                        "choose another --socket") from None
    listener.listen(64)
    return listener


def _serve_forever(listener: socket.socket, idle_seconds: float, target: str,
                   server_env: dict[str, str], set_by_imports: dict[str, str]) -> None:
    """Accept clients and reap children until idle for ``idle_seconds`` or told to stop."""
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    stop = threading.Event()
    signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup fd
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    running: dict[int, socket.socket] = {}
    try:
        while not stop.is_set():
            ready, _, _ = select.select([listener, wake_read], [], [], idle_seconds)
            if wake_read in ready:
                _drain(wake_read)
            _reap(running)
            if listener in ready:
                _accept(listener, running, server_env, target, (wake_read, wake_write),
                        set_by_imports)
            elif not ready and not running:
                break  # idle
    finally:
        signal.set_wakeup_fd(-1)
        wake_read.close()
        wake_write.close()
        _reap(running, block=True)  # a command already running ends and its client hears how


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except BlockingIOError:
        pass


def _reap(running: dict[int, socket.socket], block: bool = False) -> None:
    """Tell each finished command's client how it ended (with ``block``: wait for all)."""
    while running:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is None:
            continue
        if os.WIFSIGNALED(status):
            reply = {"signal": os.WTERMSIG(status)}
        else:
            reply = {"exit": os.waitstatus_to_exitcode(status)}
        try:
            send_message(conn, reply)
        except OSError:
            pass  # the client is gone (killed); the child already died with it
        conn.close()


def _accept(listener: socket.socket, running: dict[int, socket.socket],
            server_env: dict[str, str], target: str, own: Sequence[socket.socket],
            set_by_imports: dict[str, str]) -> None:
    """Read one client's request; refuse it (cold) or fork its command."""
    conn, _ = listener.accept()
    if _peer_uid(conn) != os.getuid():
        conn.close()  # another user's process (the socket's mode already keeps them out)
        return
    conn.settimeout(10.0)
    try:
        request, fds = receive_message(conn, max_fds=3)
    except (OSError, ValueError):
        conn.close()
        return
    refusal = _refusal(request, fds, server_env, set_by_imports)
    if refusal:
        for fd in fds:
            os.close(fd)
        try:
            send_message(conn, {"cold": refusal})
        except OSError:
            pass
        conn.close()
        return
    conn.settimeout(None)
    pid = os.fork()
    if pid == 0:
        request["env"] = {**set_by_imports, **request["env"]}
        _run_child(conn, request, fds, target, [listener, *own, *running.values()])
    for fd in fds:
        os.close(fd)
    running[pid] = conn


def _peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end (``SO_PEERCRED``: pid, uid, gid)."""
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", credentials)[1]


def _refusal(request: dict | None, fds: list[int], server_env: dict[str, str],
             set_by_imports: dict[str, str]) -> str:
    """Why this request cannot run warm ("" when it can)."""
    if request is None or len(fds) != 3:
        return "the client's request was incomplete"
    if request.get("protocol") != PROTOCOL:
        return "the warm server runs another tailbank version; restart it"
    if request.get("interpreter") != interpreter():
        return (f"the warm server runs the Python of {interpreter()}, this command that of "
                f"{request.get('interpreter')}; start the server from the same environment")
    # a variable an import sets anyway, at the value it sets, changes nothing
    client_env = {key: value for key, value in import_time_env(request.get("env", {})).items()
                  if set_by_imports.get(key) != value}
    if client_env != server_env:
        differing = sorted(set(client_env.items()) ^ set(server_env.items()))
        names = ", ".join(dict.fromkeys(key for key, _ in differing))
        return (f"{names} differ between this command and the warm server (they act at import "
                "time); start the server with the same environment")
    return ""


# ---------------------------------------------------------------------------- child
def _run_child(conn: socket.socket, request: dict, fds: list[int], target: str,
               server_sockets: Sequence[socket.socket]) -> NoReturn:
    """Become the client's command: its descriptors, directory, environment, path, signals;
    run ``target``; exit with its status. Never returns into the server's loop."""
    code = 1
    try:
        _become_client(request, fds, server_sockets)
        threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
        code = _call(target)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not go back
        import traceback

        traceback.print_exc()
    finally:
        _finish(code)


def _become_client(request: dict, fds: list[int], server_sockets: Sequence[socket.socket]) -> None:
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sock in server_sockets:
        sock.close()
    for target_fd, fd in enumerate(fds):
        os.dup2(fd, target_fd)
        os.close(fd)
    _reopen_stdio()
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    sys.path[:] = request["path"]
    for name in [name for name in sys.modules if name.split(".")[0] in OWN_PACKAGES]:
        del sys.modules[name]
    importlib.invalidate_caches()


def _reopen_stdio() -> None:
    """Text streams over the client's descriptors, buffered as Python buffers a fresh
    process's: line-buffered on a terminal (stdout) and always (stderr)."""
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    errors = getattr(sys.stdout, "errors", None) or "strict"
    sys.stdin = sys.__stdin__ = open(0, encoding=encoding, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(  # noqa: SIM115
        1, "w", encoding=encoding, errors=errors, closefd=False,
        buffering=1 if os.isatty(1) or unbuffered else -1,
    )
    sys.stderr = sys.__stderr__ = open(  # noqa: SIM115
        2, "w", encoding=encoding, errors="backslashreplace", closefd=False, buffering=1
    )


def _watch_client(conn: socket.socket) -> None:
    """Pass on the client's signals; die with the client if it goes away."""
    while True:
        try:
            message, _ = receive_message(conn)
        except OSError:
            message = None
        if message is None:
            os.kill(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), int(message["signal"]))


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


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m stages.warm SOCKET [IDLE_SECONDS]``: serve in the foreground."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        raise SystemExit("usage: python -m stages.warm SOCKET [IDLE_SECONDS]")
    try:
        serve(args[0], float(args[1]) if len(args) == 2 else 3600.0)
    except WarmError as error:
        raise SystemExit(f"tailbank: error: {error}") from None


if __name__ == "__main__":
    main()
