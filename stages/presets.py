"""Presets: the papers' recipes as partial params files, merged into params.yaml on request.

A preset is a YAML file in ``stages/presets/`` holding only the keys it sets (data set,
backbone, schedule, method options, ...). ``tailbank preset NAME`` deep-merges it into
params.yaml, keeping the comments of the keys it does not touch, validates the result against
the schema and writes it atomically, so a user reproduces a paper's setting without editing
code and sees the change with ``git diff params.yaml``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML

from core.names import did_you_mean, name_problem
from stages.errors import StageError
from stages.io import write_bytes
from stages.params import parse_params

PRESET_DIR = Path(__file__).with_name("presets")


def available() -> dict[str, str]:
    """Preset names mapped to the first line of their description."""
    presets = {}
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        first = path.read_text().splitlines()[0] if path.stat().st_size else ""
        presets[path.stem] = first.removeprefix("#").strip()
    return presets


def read_preset(name: str) -> dict[str, Any]:
    """The keys a preset sets.

    Raises:
        StageError: unknown preset (with the closest name and the list).
    """
    problem = name_problem(name)
    if problem is not None:
        raise StageError(f"preset name {name!r} {problem}; list the presets with "
                         "`tailbank preset`")
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        names = tuple(available())
        hint = did_you_mean(name, names, cutoff=0.5)
        raise StageError(f"unknown preset '{name}'{hint}; available: {', '.join(names)}")
    return yaml.safe_load(path.read_text()) or {}


def apply(name: str, params_path: Path) -> list[str]:
    """Merge preset ``name`` into ``params_path``; validate, then write it atomically.

    Returns:
        The dotted keys whose value the preset set.

    Raises:
        StageError: unknown preset, missing params file, or a merged file that does not
            validate (the params file is then left untouched).
    """
    preset = read_preset(name)
    if not params_path.is_file():
        raise StageError(f"{params_path}: params file not found; run from the project root")
    round_trip = YAML()
    round_trip.preserve_quotes = True
    round_trip.width = 4096  # keep flow lists such as tau_grid on one line
    round_trip.representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    document = round_trip.load(params_path.read_text())
    changed = merge_into(document, preset)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    parse_params(yaml.safe_load(buffer.getvalue()), origin=str(params_path))
    write_bytes(params_path, buffer.getvalue().encode())
    return changed


def merge_into(document: Any, preset: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Deep-merge ``preset`` into a ruamel document in place; mappings merge, the rest replaces.

    ``methods:`` is replaced whole when the preset sets it, so a preset names exactly the
    methods it trains.
    """
    changed = []
    for key, value in preset.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(document.get(key), Mapping) and (
            dotted != "methods"
        ):
            changed += merge_into(document[key], value, prefix=f"{dotted}.")
        else:
            document[key] = value
            changed.append(dotted)
    return changed
