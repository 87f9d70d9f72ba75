"""tailbank's version: the installed distribution's, else the source tree's pyproject.toml.

A checkout run without ``pip install`` (``PYTHONPATH=. python -m stages.cli``) has no
distribution metadata; the version written into banks then comes from the source it runs.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def tailbank_version(pyproject: Path = PYPROJECT) -> str:
    """The version string, or "unknown" when neither source gives one."""
    try:
        return metadata.version("tailbank")
    except metadata.PackageNotFoundError:
        pass
    if tomllib is None:
        return "unknown"
    try:
        return str(tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"])
    except (OSError, KeyError, TypeError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return "unknown"
