"""Atomic file writes: a file appears complete, or the old one (or none) stays.

Every write goes to a temporary file beside the target, is flushed to disk, then renamed over
the target (``os.replace`` is atomic on POSIX) and the folder entry is synced. On any error the
temporary file is removed. A write that fails because the disk (or the process's file-size
limit) is full raises an ``OSError`` that names the target, so the CLI can say which file did
not fit: `is_disk_full` recognises it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ENOSPC: the file system is full; EFBIG: the file-size limit (RLIMIT_FSIZE) or the file
# system's largest file; EDQUOT: the user's quota. A user fixes all three the same way.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
OUTPUT_MODE = 0o644  # mkstemp creates 0600; outputs are shared artefacts


def is_disk_full(error: BaseException) -> bool:
    """True for an ``OSError`` that says the disk, a quota or the file-size limit is full."""
    return isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS


def temporary_name(target: Path) -> str:
    """The prefix of every temporary file written beside ``target`` (``.<name>.``)."""
    return f".{target.name}."


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On an exception the temporary file is removed and ``target`` is left untouched; an
    ``OSError`` without a file name gets ``target``'s.
    """
    target = Path(target)
    temporary = new_temporary(target)
    try:
        yield temporary
        commit(temporary, target)
    except OSError as error:
        raise named(error, target) from None
    finally:
        temporary.unlink(missing_ok=True)


def new_temporary(target: Path) -> Path:
    """A new, empty temporary file beside ``target`` (its folder is created), for a writer
    that fills it over time and then calls `commit`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=temporary_name(target), suffix=".tmp", dir=target.parent)
    os.close(handle)
    return Path(name)


def commit(temporary: Path, target: Path) -> None:
    """Make a complete ``temporary`` the ``target``: flushed to disk, readable by all (mkstemp
    creates 0600), renamed over ``target`` and the rename persisted."""
    with open(temporary, "rb") as written:
        os.fsync(written.fileno())
    os.chmod(temporary, OUTPUT_MODE)
    os.replace(temporary, target)
    sync_directory(target.parent)


def write_bytes_atomically(target: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(data)


def torch_bytes(payload: Any) -> bytes:
    """``torch.save(payload)`` as bytes (the same bytes a file would get).

    Serialising to memory first means a full disk surfaces as an ``OSError`` of the file
    write, instead of an opaque ``RuntimeError`` from inside torch's zip writer.
    """
    import torch  # kept out of import time: this layer is imported by torch-free code

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_torch_atomically(payload: Any, target: str | Path) -> None:
    """Atomically ``torch.save`` a payload (torch's zip writer is byte-stable for equal input)."""
    write_bytes_atomically(target, torch_bytes(payload))


def named(error: OSError, target: Path) -> OSError:
    """``error`` itself when it names a file, else a copy that names ``target``."""
    if error.filename is not None:
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno or 0), str(target))


def sync_directory(directory: Path) -> None:
    """Persist a rename on POSIX file systems (directories cannot be opened on Windows)."""
    if os.name != "posix":
        return
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
