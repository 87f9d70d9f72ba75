"""Names given by users: the closest valid name of a misspelt one, and the identifier rule.

Every "did you mean" of the project comes from `closest`, so a misspelt dataset, backbone,
method kind, option, params key or preset is matched the same way everywhere; the layers only
word the hint their own way. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# A method key or preset name names folders, files, DVC stages and command-line words.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def closest(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The valid name most like ``word`` (difflib's ratio of at least ``cutoff``), or None.

    Args:
        word: what the user wrote.
        choices: the valid names.
        cutoff: the least similarity in [0, 1] worth suggesting.
    """
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return matches[0] if matches else None


def did_you_mean(
    word: str, choices: Iterable[str], prefix: str = "", cutoff: float = 0.6
) -> str:
    """``" (did you mean '<prefix><name>'?)"`` for the closest name; ``""`` when none is close."""
    match = closest(word, choices, cutoff)
    return f" (did you mean '{prefix}{match}'?)" if match is not None else ""


def valid_hint(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """``"; did you mean 'x'? valid: a, b, c"``: the tail of an unknown-name error message."""
    valid = list(choices)
    match = closest(word, valid, cutoff)
    suggestion = f"; did you mean '{match}'?" if match is not None else ";"
    return f"{suggestion} valid: {', '.join(valid)}"


def name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as a method key or preset name, or None when it is fine.

    A method key names folders (``models/<m>/``), files (``banks/<m>.h5``) and DVC stages
    (``pretrain@<m>``); a preset name picks a file. Both must be a plain identifier: no ``/``
    or ``..`` (a path outside the project), no space (a broken DVC command line), and none of
    ``-``, ``@``, ``:`` or ``+``, which DVC's stage names and ``tailbank compare``'s
    ``method[:classifier][+dlsa]`` use as separators.
    """
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if NAME.fullmatch(name) is None:
        return "must be a letter followed by letters, digits or '_'"
    return None
