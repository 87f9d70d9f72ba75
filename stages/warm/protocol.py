"""What the warm client and server share: names, the environment rules and the wire format.

A message is a 4-byte big-endian length and a JSON object; the client's first message carries
its stdin, stdout and stderr as ``SCM_RIGHTS`` descriptors. Standard library only: the client
runs before any third-party import.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

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



def interpreter() -> str:
    """This Python and its environment: the real binary and ``sys.prefix`` (two venvs share
    one binary; one venv has several names for it)."""
    return f"{os.path.realpath(sys.executable)} in {sys.prefix}"


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
        close_all(fds)
        return None, []
    except BaseException:
        close_all(fds)
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


def close_all(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass

