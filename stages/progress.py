"""Progress of long work: a rich bar on a terminal, one log line per epoch otherwise.

DVC and CI run stages without a terminal; there a bar would fill the log with carriage
returns, so they get a quiet line per epoch on stderr instead.
"""

from __future__ import annotations

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def interactive() -> bool:
    """True when stderr is a terminal (a person is watching)."""
    return sys.stderr.isatty()


def log(message: str) -> None:
    """One line on stderr (stdout is left for data a command prints)."""
    print(message, file=sys.stderr, flush=True)


class StepProgress:
    """A progress bar over the steps of a run, shown only on a terminal.

    Args:
        title: what is running, e.g. ``"pretrain ce"``.
        total: the number of steps of the whole run.
    """

    def __init__(self, title: str, total: int) -> None:
        self._progress: Progress | None = None
        if interactive():
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(title, total=total, status="")

    def __enter__(self) -> StepProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance_to(self, completed: int, status: str = "") -> None:
        """Move the bar to ``completed`` steps, with a short status text."""
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, status=status)

    def epoch_line(self, line: str) -> None:
        """Print an epoch summary: above the bar on a terminal, as a log line otherwise."""
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            log(line)
