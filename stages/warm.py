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
- SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to the client are passed to the command (Ctrl-C's
  SIGINT and SIGQUIT to its whole process group, as a terminal would), so its interrupt
  handlers run; a signal the client ignores (``nohup``) the command ignores too; a client
  killed outright (SIGKILL) takes the command with it;
- the bytes written: the forked child runs the same code on the same libraries. A client is
  refused, and runs cold saying why, when its import-time environment differs from the
  server's (thread counts, CUDA and torch variables, locale, Python flags:
  ``import_time_env``) or its ``sys.path`` finds another copy of a preloaded library.
  matplotlib is not preloaded: it reads ``matplotlibrc`` from the working folder at import.

The server never initialises CUDA (only importing torch, which does not), so a child can use
the GPU as a cold process would: CUDA cannot be used in a child forked after its
initialisation. Linux only: it needs ``fork`` and ``SCM_RIGHTS``.

This module imports nothing outside the standard library: the client side runs before any
third-party import.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

SOCKET_ENV = "TAILBANK_WARM"
PROTOCOL = 2
# tailbank's own packages: a child imports them afresh, so code edited while the server runs
# is the code that runs
OWN_PACKAGES = ("core", "features", "pipeline", "stages")
# What the stages import from third parties: the server imports these once.
# tests/stages/test_warm.py checks that it covers every stage's third-party imports but
# NOT_PRELOADED.
PRELOAD = (
    "numpy", "scipy.special", "scipy.stats", "yaml", "pydantic", "annotated_types", "typer",
    "h5py", "xxhash", "faiss", "torch", "torch._dynamo", "torch.distributed", "torchvision",
    "nflows", "sklearn.linear_model", "sklearn.manifold", "sklearn.metrics", "dvclive",
)
# Left to each command: matplotlib reads its settings (matplotlibrc in the working folder,
# MPLCONFIGDIR, the home folder) when it is imported.
NOT_PRELOADED = ("matplotlib",)
# Environment variables that libraries read while they are imported (thread pools, CUDA and
# torch switches, locale for stdio, Python's own flags): a client must match the server on
# them, or the forked command could differ from a cold one.
IMPORT_TIME_PREFIXES = (
    "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "BLIS_", "VECLIB_", "NUMEXPR_", "CUDA_",
    "CUBLAS_", "CUDNN_", "NCCL_", "NVIDIA_", "TORCH", "PYTORCH_", "LD_", "PYTHON", "FAISS_",
    "SKLEARN_", "SCIPY_", "HDF5_", "LANG", "LC_",
)
# PYTHONPATH only shapes sys.path at start; the client's sys.path itself is checked
NOT_IMPORT_TIME = ("PYTHONPATH",)
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# what a terminal sends to a whole process group
GROUP_SIGNALS = (signal.SIGINT, signal.SIGQUIT)
_HEADER = struct.Struct(">I")
_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


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


def peer_uid(conn: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket."""
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    return _CREDENTIALS.unpack(credentials)[1]


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
    """The next message (a JSON object) and the descriptors that came with it; ``(None, [])``
    at end of stream. Descriptors that came with a broken message are closed."""
    fds: list[int] = []
    try:
        if max_fds:
            head, fds, _, _ = socket.recv_fds(sock, _HEADER.size, max_fds)
            fds = list(fds)
        else:
            head = sock.recv(_HEADER.size)
        head += _receive_exactly(sock, _HEADER.size - len(head)) if head else b""
        if len(head) < _HEADER.size:
            raise ValueError("end of stream")
        body = _receive_exactly(sock, _HEADER.unpack(head)[0])
        message = json.loads(body)
        if not isinstance(message, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError):
        _close_all(fds)
        return None, []
    except BaseException:
        _close_all(fds)
        raise
    return message, fds


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


def _close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


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


# ---------------------------------------------------------------------------- server
@dataclass
class _Server:
    """What the serving loop and each fork need to know."""

    listener: socket.socket
    target: str
    env_before_imports: dict[str, str]  # the import-time variables a client must match
    set_by_imports: dict[str, str]  # variables the preloaded imports added to the environment
    origins: dict[str, str | None]  # where each preloaded top-level package was loaded from
    stdio: tuple[tuple[str, str], ...]  # (encoding, errors) of stdin, stdout, stderr
    running: dict[int, socket.socket] = field(default_factory=dict)
    own: list[socket.socket] = field(default_factory=list)  # the wake-up pair


def serve(socket_path: str, idle_seconds: float = 3600.0, target: str = "stages.cli:app",
          preload: Iterable[str] = PRELOAD) -> None:
    """Listen on ``socket_path`` and run each client's command in a forked child.

    Args:
        socket_path: the Unix socket to create (an existing live server there is an error; a
            stale socket is replaced; any other file is refused).
        idle_seconds: stop after this long with no command running and none arriving.
        target: ``module:attribute`` of the callable a child runs (the Typer app).
        preload: the modules imported before the first command.
    """
    if not supported():
        raise WarmError("tailbank warm needs Linux (fork and descriptor passing)")
    stdio = tuple((getattr(stream, "encoding", None) or "utf-8",
                   getattr(stream, "errors", None) or "strict")
                  for stream in (sys.stdin, sys.stdout, sys.stderr))
    listener, inode = _listen(socket_path)
    before = dict(os.environ)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, _stop_importing)
    try:
        preload = tuple(preload)
        for name in preload:
            importlib.import_module(name)
        tops = dict.fromkeys(name.split(".")[0] for name in preload)
        server = _Server(
            listener, target, import_time_env(before),
            # some imports set variables (torch's inductor cache folder, OpenMP's fork
            # switch): a cold command would have them too, unless its own environment sets them
            {key: value for key, value in os.environ.items() if key not in before},
            {top: sys.modules[top].__spec__.origin for top in tops}, stdio)
        _serve_forever(server, idle_seconds)
    except _Stopped:
        pass  # stopped while importing: nothing started yet
    finally:
        _stop_listening(listener, socket_path, inode)


class _Stopped(BaseException):
    """A stop signal while the server was still importing."""


def _stop_importing(_number: int, _frame: object) -> None:
    raise _Stopped


def check_socket_path(socket_path: str) -> None:
    """Refuse a path the kernel cannot bind (``sun_path`` holds 108 bytes, and the socket is
    bound under a temporary name a few bytes longer)."""
    if len(os.fsencode(socket_path)) > 90:
        raise WarmError(f"{socket_path}: a Unix socket path must be under 90 bytes; "
                        "choose a shorter --socket")


def default_socket() -> str:
    """This user's socket in a folder only this user can enter: ``$XDG_RUNTIME_DIR`` when set,
    else ``tailbank-<uid>`` in the temp folder (created 0700; refused if another owns it)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = runtime if runtime else os.path.join(tempfile.gettempdir(), f"tailbank-{os.getuid()}")
    if not runtime:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise WarmError(f"{folder}: not a private folder of yours; pass --socket in one")
    return os.path.join(folder, "warm.sock")


def _listen(socket_path: str) -> tuple[socket.socket, int]:
    """A listening socket that appears at ``socket_path`` only once it listens (bound under a
    temporary name, then renamed), before the slow imports, so that early clients wait in
    the backlog instead of running cold; and the inode of its file."""
    check_socket_path(socket_path)
    _refuse_occupied(socket_path)
    temporary = os.path.join(os.path.dirname(socket_path) or ".",
                             f".{os.path.basename(socket_path)}.{os.getpid()}")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # only this user may connect: a client chooses sys.path and the environment, that is,
        # what code runs as the server's user
        previous_mask = os.umask(0o177)
        try:
            listener.bind(temporary)
        finally:
            os.umask(previous_mask)
        listener.listen(64)
        inode = os.lstat(temporary).st_ino
        os.rename(temporary, socket_path)
    except OSError as error:
        listener.close()
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise WarmError(f"{socket_path}: cannot listen there ({error.strerror}); "
                        "choose another --socket") from None
    return listener, inode


def _refuse_occupied(socket_path: str) -> None:
    """Nothing may be at ``socket_path`` but a dead socket (which goes)."""
    try:
        info = os.lstat(socket_path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise WarmError(f"{socket_path}: exists and is not a socket; choose another --socket")
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
    except OSError as error:
        raise WarmError(f"{socket_path}: a stale socket that cannot be removed "
                        f"({error.strerror}); choose another --socket") from None


def _stop_listening(listener: socket.socket, socket_path: str, inode: int) -> None:
    """Remove the socket first (new clients then run cold at once; a socket another server
    put there since stays), then refuse the clients already waiting in the backlog, so that
    they run cold too."""
    try:
        if os.lstat(socket_path).st_ino == inode:
            os.unlink(socket_path)
    except OSError:
        pass
    listener.setblocking(False)
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            break
        _refuse(conn, [], "the warm server is stopping")
    listener.close()


def _serve_forever(server: _Server, idle_seconds: float) -> None:
    """Accept clients and reap children until idle for ``idle_seconds`` or told to stop."""
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    server.own = [wake_read, wake_write]
    stop = threading.Event()
    signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select() through the wakeup fd
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, lambda *_: stop.set())
    try:
        while not stop.is_set():
            ready, _, _ = select.select([server.listener, wake_read], [], [], idle_seconds)
            if wake_read in ready:
                _drain(wake_read)
            _reap(server.running)
            if server.listener in ready:
                _accept(server)
            elif not ready and not server.running:
                break  # idle
    finally:
        signal.set_wakeup_fd(-1)
        wake_read.close()
        wake_write.close()
        _reap(server.running, block=True)  # a running command ends and its client hears how


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


def _accept(server: _Server) -> None:
    """Read one client's request; refuse it (cold) or fork its command. A bad client, or a
    fork that fails, costs that client a cold start and never the server."""
    try:
        conn, _ = server.listener.accept()
    except OSError:
        return  # e.g. out of descriptors: the client waits or times out, the server goes on
    fds: list[int] = []
    try:
        if peer_uid(conn) != os.getuid():
            conn.close()  # another user's process (the socket's mode already keeps them out)
            return
        conn.settimeout(10.0)
        request, fds = receive_message(conn, max_fds=3)
        refusal = _refusal(server, request, fds)
        if refusal:
            _refuse(conn, fds, refusal)
            return
        conn.settimeout(None)
        pid = os.fork()
    except Exception as error:  # noqa: BLE001 - one client's trouble must not stop the server
        _refuse(conn, fds, f"the warm server could not start the command ({error})")
        return
    if pid == 0:
        request["env"] = {**server.set_by_imports, **request["env"]}
        _run_child(conn, request, fds, server)
    _close_all(fds)
    server.running[pid] = conn
    try:
        send_message(conn, {"started": pid})
    except OSError:
        pass  # the client is gone; so is the child, by its watcher


def _refuse(conn: socket.socket, fds: Sequence[int], reason: str) -> None:
    _close_all(fds)
    try:
        send_message(conn, {"cold": reason})
    except OSError:
        pass
    conn.close()


def _refusal(server: _Server, request: dict | None, fds: list[int]) -> str:
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
                  if server.set_by_imports.get(key) != value}
    if client_env != server.env_before_imports:
        differing = sorted(set(client_env.items()) ^ set(server.env_before_imports.items()))
        names = ", ".join(dict.fromkeys(key for key, _ in differing))
        return (f"{names} differ between this command and the warm server (they act at import "
                "time); start the server with the same environment")
    for top, origin in server.origins.items():
        spec = importlib.machinery.PathFinder.find_spec(top, request.get("path", []))
        found = spec.origin if spec is not None else None
        if found != origin:
            return (f"this command's sys.path finds {top} at {found}, the warm server's at "
                    f"{origin}; start the server with the same PYTHONPATH")
    return ""


# ---------------------------------------------------------------------------- child
def _run_child(conn: socket.socket, request: dict, fds: list[int], server: _Server) -> NoReturn:
    """Become the client's command: its session, descriptors, directory, environment, path,
    signals; run the target; exit with its status. Never returns into the server's loop."""
    code = 1
    try:
        _become_client(request, fds, server)
        threading.Thread(target=_watch_client, args=(conn,), daemon=True).start()
        code = _call(server.target)
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not go back
        import traceback

        traceback.print_exc()
    finally:
        _finish(code)


def _become_client(request: dict, fds: list[int], server: _Server) -> None:
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
    for sock in [server.listener, *server.own, *server.running.values()]:
        sock.close()
    for target_fd, fd in enumerate(fds):
        os.dup2(fd, target_fd)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    _reopen_stdio(server.stdio)
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
