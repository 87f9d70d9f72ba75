"""Turn a plain mapping (from YAML) into a method's frozen ``Options`` dataclass, strictly."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from pipeline.errors import ConfigError
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
    lists where tuples are expected, as YAML writes them so. The options' own ``CONSTRAINTS``
    (ranges, choices) are checked when the dataclass is built.

    Args:
        options_type: a frozen dataclass whose fields all have defaults.
        given: option values by name (``None`` = all defaults).
        kind: the method kind, named when it takes no options.

    Raises:
        ConfigError: an unknown key, or a value of the wrong type or out of range; it names
            the options class and the field.
    """
    defaults = option_defaults(options_type)
    values = dict(defaults)
    owner = options_type.__name__
    for key, value in (given or {}).items():
        if key not in defaults:
            valid = tuple(defaults)
            hint = closest_hint(key, valid) if valid else f"; '{kind}' takes no options"
            raise ConfigError(owner, key, f"is not an option{hint}", value)
        values[key] = coerce_like(defaults[key], value, owner, key)
    return options_type(**values)


def coerce_like(default: Any, value: Any, owner: str, key: str) -> Any:
    """``value`` converted to the type of ``default``, or a `ConfigError` naming ``key``."""
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple and isinstance(value, list):
        return tuple(value)
    # bool is a subclass of int, so a flag must not pass for a count or the other way round.
    if isinstance(value, expected) and isinstance(value, bool) == isinstance(default, bool):
        return value
    raise ConfigError(owner, key, f"must be of type {expected.__name__} like its default "
                      f"{default!r}", value)
