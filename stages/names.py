"""Names that become paths and command-line words: method keys, preset names.

A method key names folders (``models/<m>/``, ``results/*/<m>/``), files (``banks/<m>.h5``) and
DVC stages (``pretrain@<m>``); a preset name picks a file. Both must be a plain identifier,
``[A-Za-z][A-Za-z0-9_]*``: no ``/`` or ``..`` (a path outside the project), no space (a broken
DVC command line), and none of ``-``, ``@``, ``:`` or ``+``, which DVC's stage names and
``tailbank compare``'s ``method[:classifier][+dlsa]`` use as separators.
"""

from __future__ import annotations

import re

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as a method or preset name, or None when it is fine."""
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if NAME.fullmatch(name) is None:
        return "must be a letter followed by letters, digits or '_'"
    return None
