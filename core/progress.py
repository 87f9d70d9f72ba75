"""The progress callback that the libraries call and the stage layer shows.

`pipeline` and `features` never print: long work takes an optional `Progress` and tells it how
far it has come; `stages.progress` turns that into a bar on a terminal or throttled log lines
otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""Called as ``progress(what, done, total)``: ``done`` of the ``total`` units (epochs, steps)
of the piece of work named ``what`` ("linear", "filter 1/3 flow") are finished."""


def tell(progress: Progress | None, what: str, done: int, total: int) -> None:
    """Calls ``progress`` when one is given: libraries need not check for None themselves."""
    if progress is not None:
        progress(what, done, total)


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """``progress`` with ``prefix`` before each ``what`` (None stays None), for work nested in
    a larger piece ("filter 2/3" + "linear")."""
    if progress is None:
        return None
    outer = progress

    def told(what: str, done: int, total: int) -> None:
        outer(f"{prefix} {what}", done, total)

    return told
