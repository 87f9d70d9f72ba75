"""A stage's outputs change together: written aside, then swapped in as one set.

A stage writes every output into a private staging folder under ``.tailbank/staging/``; only
when all are complete does it swap them into place. A folder output is swapped with
``renameat2(RENAME_EXCHANGE)`` (Linux), one atomic step that leaves the new set in place and the
old set in the staging folder, which is then deleted; a file output is renamed over the old
file. So a reader of one output folder sees the old set or the new set, never a mix, and a run
that fails or is killed before the swap leaves every output as it was.

A stage with outputs in two folders (``models/…`` and ``results/…``) swaps them one after the
other. Between the two a kill could leave one new and one old, so the swaps are listed first
in a journal; the next tailbank command finishes a journaled swap before it does anything
else, and drops a staging folder that has none (a run that died before its swap).

Every staging folder is locked (``flock``) by the process writing it, so a second tailbank
command running beside it never touches it. Under ``dvc repro`` DVC deletes a stage's
outputs before running it: there the promise is the new set or none.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import resource
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from core.atomic import sync_directory, write_bytes_atomically
from stages.errors import StageError

STAGING = Path(".tailbank/staging")
_JOURNAL = "journal.json"
_LOCK = "lock"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


class StageOutputs:
    """The outputs of one stage run, staged and then swapped in together.

    Use as a context manager around the whole stage: entering it checks that every output
    can be written (before any training), a clean exit swaps the set in, an exception (or
    Ctrl-C / SIGTERM) leaves the old outputs untouched and removes what was staged.

    Args:
        folders: output folders the stage owns whole (e.g. ``results/classify/ce``).
        files: single output files (e.g. ``banks/ce.h5``).
    """

    def __init__(self, folders: Sequence[Path] = (), files: Sequence[Path] = ()) -> None:
        self.targets = [Path(target) for target in (*folders, *files)]
        self._folders = {Path(folder) for folder in folders}
        self._root: Path | None = None
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> StageOutputs:
        recover()
        for target in self.targets:
            check_writable(target, folder=target in self._folders)
        self._root, self._lock = _new_staging_root()
        for index, target in enumerate(self.targets):
            _check_same_file_system(target, self._root)
            if target in self._folders:
                (self._root / str(index)).mkdir()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        # Swapping in and cleaning up are not cut short by Ctrl-C or SIGTERM: an interruption
        # that arrives meanwhile is raised once both are done.
        with interrupts_deferred():
            try:
                if kind is None:
                    self._commit()
            finally:
                self._release()

    def staged(self, target: Path) -> Path:
        """Where to write ``target`` (one of the targets, or a path inside a target folder)."""
        root = self._require_root()
        target = Path(target)
        for index, output in enumerate(self.targets):
            if target == output or output in target.parents:
                staged = root / str(index) / target.relative_to(output)
                staged.parent.mkdir(parents=True, exist_ok=True)
                return staged
        raise ValueError(f"{target} is not an output of this stage ({self.targets})")

    def _commit(self) -> None:
        """Swap every staged output in; if a swap fails, the journal stays for `recover`."""
        root = self._require_root()
        swaps = []
        for index, target in enumerate(self.targets):
            staged = root / str(index)
            if staged.exists():
                swaps.append((staged, target))
        if len(swaps) > 1:
            _write_journal(root, swaps)
        for staged, target in swaps:
            _swap_in(staged, target)
        (root / _JOURNAL).unlink(missing_ok=True)

    def _release(self) -> None:
        """Drop the staging folder (which holds the old outputs after a commit) and its lock;
        a folder whose journal is unfinished is left for `recover`."""
        if self._root is not None:
            if not (self._root / _JOURNAL).exists():
                shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _require_root(self) -> Path:
        if self._root is None:
            raise RuntimeError("StageOutputs is not open; use it as a context manager")
        return self._root


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, raised in the main thread so that every cleanup of the stage runs."""


_deferring = 0
_pending: list[int] = []


def install_interrupt_handlers() -> None:
    """Ctrl-C and SIGTERM raise `Interrupted`, except while outputs are being swapped in:
    there the signal waits for the swap to finish (`interrupts_deferred`)."""

    def interrupt(signum: int, frame: Any) -> None:
        if _deferring:
            _pending.append(signum)
            return
        raise Interrupted()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A block that Ctrl-C or SIGTERM does not cut in two; the interruption is raised after."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _pending:
        _pending.clear()
        raise Interrupted()


def check_writable(target: Path, *, folder: bool) -> None:
    """One line now, not after the training, when an output cannot be written.

    The output's folder is created when missing; it must be a writable folder, and an
    existing output must not be blocked by a file of the other kind (a file where a folder is
    expected, or the other way round).

    Raises:
        StageError: naming the path and the fix.
    """
    target = Path(target)
    parent = target.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists() and not ancestor.is_dir():
            raise StageError(f"{ancestor}: is a file where tailbank needs a folder for {target}; "
                             "move or delete it and re-run")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StageError(f"{parent}: cannot create the output folder ({error.strerror}); make "
                         "it writable and re-run") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StageError(f"{parent}: the output folder is not writable; make it writable "
                         f"(chmod u+w) and re-run")
    if target.exists() and target.is_dir() != folder:
        found, wanted = ("a folder", "a file") if target.is_dir() else ("a file", "a folder")
        raise StageError(f"{target}: is {found} where tailbank writes {wanted}; move or "
                         "delete it and re-run")


def check_space(target: Path, needed: int) -> None:
    """One line before the work, not a crash after it, when ``needed`` bytes will not fit:
    neither on the disk of ``target`` nor under this process's file-size limit.

    Raises:
        StageError: naming the file, what it needs and what there is.
    """
    existing = next(folder for folder in Path(target).absolute().parents if folder.exists())
    free = shutil.disk_usage(existing).free
    limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    room = free if limit == resource.RLIM_INFINITY else min(free, limit)
    if needed > room:
        what = "free on its disk" if room == free else "allowed by the file-size limit (ulimit -f)"
        raise StageError(f"no space left for {target}: it needs about {needed / 2**20:.1f} MiB "
                         f"and {room / 2**20:.1f} MiB are {what}; free space and re-run")


def recover() -> None:
    """Finish every journaled swap a killed run left, and drop every staging folder that has
    no journal and no live owner (its run died before swapping anything)."""
    if not STAGING.is_dir():
        return
    with _global_lock():
        for root in sorted(STAGING.iterdir()):
            if not root.is_dir():
                continue
            owner = _try_lock(root / _LOCK)
            if owner is None:
                continue  # another tailbank process is writing it
            try:
                _settle(root)
            finally:
                owner.close()


def _settle(root: Path) -> None:
    """Roll a dead run's staging folder forward (when it has a journal) and delete it."""
    journal = root / _JOURNAL
    if journal.is_file():
        _finish_journal(json.loads(journal.read_text()))
    shutil.rmtree(root, ignore_errors=True)


def _new_staging_root() -> tuple[Path, IO[bytes]]:
    try:
        STAGING.mkdir(parents=True, exist_ok=True)
        with _global_lock():
            root = Path(tempfile.mkdtemp(dir=STAGING))
            lock = _try_lock(root / _LOCK)
    except OSError as error:
        raise StageError(f"{STAGING}: cannot create the staging folder ({error.strerror}); "
                         "make the project folder writable and re-run") from None
    assert lock is not None  # a folder made a moment ago has no other owner
    return root, lock


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Serialises creating and sweeping staging folders across tailbank processes."""
    with open(STAGING / ".lock", "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _try_lock(path: Path) -> IO[bytes] | None:
    """An exclusive flock on ``path`` (created when missing), or None when another holds it."""
    handle = open(path, "ab")  # noqa: SIM115 - held open for the run's lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _check_same_file_system(target: Path, root: Path) -> None:
    if os.stat(target.parent).st_dev != os.stat(root).st_dev:
        raise StageError(
            f"{target.parent}: is on another file system than {STAGING}, so outputs cannot be "
            "swapped in atomically; keep the project's outputs on one file system"
        )


def _write_journal(root: Path, swaps: list[tuple[Path, Path]]) -> None:
    entries = [{"staged": str(staged), "target": str(target), "inode": os.stat(staged).st_ino}
               for staged, target in swaps]
    write_bytes_atomically(root / _JOURNAL, json.dumps(entries).encode())


def _finish_journal(entries: list[dict[str, Any]]) -> None:
    """Roll a journaled set forward: swap in every entry whose new folder is not yet in place
    (an entry is done when its target is the staged folder, known by its inode)."""
    for entry in entries:
        staged, target, inode = Path(entry["staged"]), Path(entry["target"]), entry["inode"]
        if _inode(target) == inode:
            continue
        if _inode(staged) == inode:
            _swap_in(staged, target)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _swap_in(staged: Path, target: Path) -> None:
    """Put ``staged`` at ``target`` in one atomic step; the old target (if any) ends up at
    ``staged``, to be deleted with the staging folder."""
    _sync_tree(staged)
    if target.is_dir() and staged.is_dir():
        exchange(staged, target)
    else:
        os.replace(staged, target)
    sync_directory(target.parent)


def _sync_tree(path: Path) -> None:
    """fsync every file of a staged output, so the swap never exposes unwritten data."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def exchange(first: Path, second: Path) -> None:
    """Atomically swap two paths (Linux ``renameat2`` with ``RENAME_EXCHANGE``).

    Where the kernel or file system cannot exchange, falls back to two renames: ``second``
    moved aside, ``first`` moved in; a kill between them leaves ``second`` missing, which the
    journal's roll-forward (or the next run) repairs.
    """
    if _renameat2 is not None:
        result = _renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second),
                            _RENAME_EXCHANGE)
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(second))
    aside = first.with_name(first.name + ".old")
    os.replace(second, aside)
    os.replace(first, second)
    os.replace(aside, first)


def _load_renameat2() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()
