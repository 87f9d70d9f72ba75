"""Turn a plain mapping (from YAML) into a method's frozen ``Options`` dataclass, strictly."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeline.errors import PipelineError
from pipeline.models import closest_hint


def option_defaults(options_type: type) -> dict[str, Any]:
    """Option names of an ``Options`` dataclass mapped to their defaults, in field order.

    Raises:
        TypeError: a field has no plain default (a programming error in the method).
    """
    defaults = {}
    for field in dataclasses.fields(options_type):
        if field.default is dataclasses.MISSING:
            raise TypeError(f"{options_type.__qualname__}.{field.name} needs a plain default")
        defaults[field.name] = field.default
    return defaults


def parse_options(options_type: type, given: Mapping[str, Any] | None, kind: str) -> Any:
    """Build ``options_type`` from ``given``, keeping the default of every key not given.

    Values must have the type of the default; ints are accepted where floats are expected and
    lists where tuples are expected, as YAML writes them so.

    Args:
        options_type: a frozen dataclass whose fields all have defaults.
        given: option values by name (``None`` = all defaults).
        kind: the method kind, used to name the key at fault.

    Raises:
        PipelineError: an unknown key or a value of the wrong type.
    """
    defaults = option_defaults(options_type)
    values = dict(defaults)
    for key, value in (given or {}).items():
        if key not in defaults:
            valid = tuple(defaults)
            hint = closest_hint(key, valid) if valid else f"; '{kind}' takes no options"
            raise PipelineError(f"unknown key 'methods.{kind}.options.{key}'{hint}")
        values[key] = coerce_like(defaults[key], value, f"methods.{kind}.options.{key}")
    return options_type(**values)


def coerce_like(default: Any, value: Any, key: str) -> Any:
    """``value`` converted to the type of ``default``, or a one-line error naming ``key``."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    # bool is a subclass of int, so a flag must not pass for a count or the other way round.
    if isinstance(value, expected) and isinstance(value, bool) == isinstance(default, bool):
        return value
    raise PipelineError(
        f"key '{key}' must be of type {expected.__name__} like its default {default!r}, "
        f"got {value!r}; fix the value in params.yaml"
    )
