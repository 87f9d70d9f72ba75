"""Kill a CLI stage after its k-th file operation, for every k, and record what it left.

`interrupt_every_write` runs one tailbank command in a forked child. At the child's first write
into a staged output (the start of the writing phase, after all training), the child stops and
becomes the *pilot*: for k = 1, 2, ... it snapshots the project, forks a *runner* that carries
on from that very point and signals itself right after its k-th file operation, waits for it,
records the output folders it left (and, after SIGKILL, what the next command's recovery
makes of them), and puts the project back. The training therefore runs once per command, not
once per k. The last runner is the one that finishes without being signalled.

File operations are the writes a process can make through Python: opening a file for writing,
os.open with a write flag, mkdir, rmdir, unlink, rename, replace, chmod, fsync and the
exchange of two folders.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stages import outputs

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_RESTORED = ("results", "models", "reports", "checkpoints", "predictions", ".tailbank")


def tree(folder: Path) -> dict[str, str]:
    """relative file name -> sha256 of every file under ``folder`` ({} when missing)."""
    if not folder.exists():
        return {}
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


class _Harness:
    def __init__(self, project: Path, folders: list[Path], signum: int, log: Path) -> None:
        self.project, self.folders, self.signum, self.log = project, folders, signum, log
        self.staging = (project / outputs.STAGING).resolve()
        self.started = False
        self.kill_at: int | None = None
        self.count = 0

    def operation(self, path: Any) -> None:
        """Called before every write; forks the runners at the first staged write."""
        if not self.started and self._inside_a_staged_output(path):
            self.started = True
            self._pilot()  # returns only in a runner

    def done(self) -> None:
        """Called after every write: the runner signals itself after its k-th."""
        if self.kill_at is None:
            return
        self.count += 1
        if self.count == self.kill_at:
            self.kill_at = None
            os.kill(os.getpid(), self.signum)

    def _inside_a_staged_output(self, path: Any) -> bool:
        if not isinstance(path, str | bytes | os.PathLike):
            return False
        try:
            relative = Path(os.fsdecode(path)).resolve().relative_to(self.staging)
        except ValueError:
            return False
        return len(relative.parts) >= 3  # <root>/<output index>/<file>

    def _pilot(self) -> None:
        snapshot = self.project.parent / "fork-point"
        self._copy(self.project, snapshot)
        records = []
        for k in range(1, 2000):
            child = os.fork()
            if child == 0:
                self.kill_at, self.count = k, 0
                return
            _, status = os.waitpid(child, 0)
            record = {"k": k, "signalled": os.WIFSIGNALED(status),
                      "exit": os.waitstatus_to_exitcode(status),
                      "outputs": {str(folder): tree(self.project / folder)
                                  for folder in self.folders}}
            record["left"] = sorted(path.name for path in self.staging.iterdir())
            for root in self.staging.iterdir() if self.staging.is_dir() else ():
                if root.is_dir():
                    outputs._settle(root)  # what the next tailbank command does first
            record["settled"] = {str(folder): tree(self.project / folder)
                                 for folder in self.folders}
            record["staging"] = sorted(path.name for path in self.staging.iterdir())
            records.append(record)
            self._copy(snapshot, self.project)
            if not record["signalled"] and record["exit"] == 0:
                break  # this runner finished: k passed its last write
        self.log.write_text(json.dumps(records))
        os._exit(0)

    def _copy(self, source: Path, target: Path) -> None:
        for name in _RESTORED:
            shutil.rmtree(target / name, ignore_errors=True)
            if (source / name).exists():
                shutil.copytree(source / name, target / name, symlinks=True)


def _hooked(harness: _Harness) -> list[tuple[Any, str, Callable]]:
    def wrap(original: Callable, path_of: Callable[..., Any], counts: Callable[..., bool]):
        def write(*args: Any, **kwargs: Any) -> Any:
            if not counts(*args, **kwargs):
                return original(*args, **kwargs)
            harness.operation(path_of(*args, **kwargs))
            try:
                return original(*args, **kwargs)
            finally:
                harness.done()

        return write

    def first(*args: Any, **kwargs: Any) -> Any:
        return args[0] if args else next(iter(kwargs.values()), None)

    def always(*args: Any, **kwargs: Any) -> bool:
        return True

    def opens_for_writing(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> bool:
        return any(flag in mode for flag in "wax+")

    def os_open_for_writing(path: Any, flags: int, *args: Any, **kwargs: Any) -> bool:
        return bool(flags & _WRITE_FLAGS)

    patches = [
        (builtins, "open", wrap(builtins.open, first, opens_for_writing)),
        (io, "open", wrap(io.open, first, opens_for_writing)),
        (os, "open", wrap(os.open, first, os_open_for_writing)),
        (outputs, "exchange", wrap(outputs.exchange, first, always)),
    ]
    for name in ("mkdir", "rmdir", "unlink", "remove", "rename", "replace", "chmod", "fsync"):
        patches.append((os, name, wrap(getattr(os, name), first, always)))
    return patches


def interrupt_every_write(
    project: Path, command: list[str], folders: list[Path], signum: int, log: Path
) -> list[dict[str, Any]]:
    """Run ``tailbank <command>`` in ``project``; signal it after each k-th write of its
    writing phase (see the module docstring).

    Returns:
        One record per k: "signalled", "exit", "outputs" (folder -> tree after the runner
        died), "left" (the staging folder's entries then), "settled" (the folders after the
        next command's recovery) and "staging" (the staging folder's entries after it).
    """
    from stages.cli import app

    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.chdir(project)
            harness = _Harness(project, folders, signum, log)
            for module, name, replacement in _hooked(harness):
                setattr(module, name, replacement)
            try:
                result = app(command, standalone_mode=False)
                code = result if isinstance(result, int) else 0
            except SystemExit as error:
                code = int(error.code or 0)
            except BaseException as error:  # noqa: BLE001 - typer.Exit and friends
                code = int(getattr(error, "exit_code", 1))
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    if not log.is_file():
        raise AssertionError(f"the command never reached its writing phase (status {status})")
    return json.loads(log.read_text())


SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
