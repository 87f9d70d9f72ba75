"""The warm server: import the heavy libraries once, listen on a Unix socket, check each
client's request and fork its command (`stages.warm.child`)."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import select
import signal
import socket
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stages.warm.child import run_child
from stages.warm.protocol import (
    PRELOAD,
    PROTOCOL,
    SOCKET_ENV,
    WarmError,
    close_all,
    import_time_env,
    interpreter,
    peer_uid,
    receive_message,
    send_message,
    supported,
)


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
        try:
            request["env"] = {**server.set_by_imports, **request["env"]}
            run_child(conn, request, fds, server.target, server.stdio,
                      [server.listener, *server.own, *server.running.values()])
        finally:
            os._exit(1)  # reached only if the child failed before running: never serve twice
    close_all(fds)
    server.running[pid] = conn
    try:
        send_message(conn, {"started": pid})
    except OSError:
        pass  # the client is gone; so is the child, by its watcher


def _refuse(conn: socket.socket, fds: Sequence[int], reason: str) -> None:
    close_all(fds)
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
