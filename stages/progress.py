"""Progress of long work: a rich bar on a terminal, throttled log lines otherwise.

DVC and CI run stages without a terminal; there a bar would fill the log with carriage
returns, so they get a plain line on stderr at most every `LOG_EVERY_S` seconds, with the
elapsed time and the throughput. Progress never goes to stdout and never into an output file.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# Seconds between two progress lines without a terminal: a line per minute or so of a long
# stage, never one per step.
LOG_EVERY_S = 10.0


def interactive() -> bool:
    """True when stderr is a terminal (a person is watching)."""
    return sys.stderr.isatty()


def log(message: str) -> None:
    """One line on stderr (stdout is left for data a command prints)."""
    print(message, file=sys.stderr, flush=True)


class StepProgress:
    """The progress of one stage: a bar on a terminal, throttled log lines otherwise.

    The stage moves it with `advance_to` (it counts the steps itself) or hands `report` to a
    library as its `core.progress.Progress` callback (the library says what it is doing and
    how far it has come; the bar follows the current piece of work).

    Args:
        title: what is running, e.g. ``"pretrain ce"``.
        total: the number of steps of the whole run (for `advance_to`; `report` brings its
            own totals).
        unit: what a step is, for the throughput ("steps", "epochs"); "" for plain counts.
        bar: show a bar; None: when stderr is a terminal.
        clock: seconds from any fixed start (tests pass a fake one).
        every_s: seconds between two log lines without a bar.
        sink: where log lines go (one line per call).
    """

    def __init__(
        self,
        title: str,
        total: int,
        unit: str = "",
        *,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = LOG_EVERY_S,
        sink: Callable[[str], None] = log,
    ) -> None:
        self._title, self._unit, self._total = title, unit, total
        self._clock, self._every_s, self._sink = clock, every_s, sink
        self._start = self._next_line = 0.0
        self._counted = 0  # units seen, for the throughput
        self._progress: Progress | None = None
        if interactive() if bar is None else bar:
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
        self._start = self._clock()
        self._next_line = self._start + self._every_s
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
        elif kind is None and self._counted:
            self._sink(f"{self._title}: done in {self._elapsed():.1f} s{self._rate()}")

    def advance_to(self, completed: int, status: str = "") -> None:
        """Move to ``completed`` of the run's ``total`` steps, with a short status text."""
        self._counted = completed
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, status=status)
        else:
            self._maybe_line(f"{completed}/{self._total}" + (f" ({status})" if status else ""))

    def report(self, what: str, done: int, total: int) -> None:
        """A `core.progress.Progress` callback: ``done`` of ``total`` units of ``what``."""
        self._counted += 1
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._title} {what}",
                                  completed=done, total=total, status="")
        else:
            self._maybe_line(f"{what} {done}/{total}")

    def epoch_line(self, line: str) -> None:
        """Print an epoch summary: above the bar on a terminal, as a log line otherwise."""
        if self._progress is not None:
            self._progress.console.print(line)
        else:
            self._sink(line)

    def _maybe_line(self, where: str) -> None:
        now = self._clock()
        if now < self._next_line:
            return
        # the next line is due a full interval from now: a slow step never causes a burst
        self._next_line = now + self._every_s
        self._sink(f"{self._title}: {where}, {self._elapsed(now):.1f} s{self._rate(now)}")

    def _elapsed(self, now: float | None = None) -> float:
        return (self._clock() if now is None else now) - self._start

    def _rate(self, now: float | None = None) -> str:
        elapsed = self._elapsed(now)
        if elapsed <= 0 or not self._counted:
            return ""
        unit = f" {self._unit}" if self._unit else ""
        return f", {self._counted / elapsed:.3g}{unit}/s"
