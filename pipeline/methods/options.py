"""Turn a plain mapping (from YAML) into a method's frozen ``Options`` dataclass, strictly.

A mapping may also list several values for one numeric option (``beta: [0, 1, 2, 3, 4, 5]``):
:func:`find_sweep` reads that as a sweep, one training run per value, the value to keep being
chosen on val by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from core.constraints import Interval, ListOf
from core.names import valid_hint
from pipeline.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class OptionSweep:
    """One option given several values: train once with each, keep the best on val.

    Attributes:
        option: the swept option's name.
        values: its values in the order given (the first listed wins ties), each converted to
            the type of the option's default.
    """

    option: str
    values: tuple[Any, ...]

    def candidates(self, given: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``given`` with the swept option set to each value in turn, in the order given."""
        return [{**given, self.option: value} for value in self.values]

    def label(self, value: Any) -> str:
        """A file-name-safe name of one run of the sweep, e.g. ``beta=5.0``."""
        return f"{self.option}={value!r}"


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
            hint = valid_hint(key, valid) if valid else f"; '{kind}' takes no options"
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


def is_sweepable(default: Any) -> bool:
    """Whether an option with this default may be swept: a single number (not a flag).

    Names and flags are switches, not values to tune on val; an option whose value is a list
    (a tuple default, e.g. GML's projector widths) takes a list as its one value.
    """
    return isinstance(default, int | float) and not isinstance(default, bool)


def find_sweep(
    options_type: type, given: Mapping[str, Any] | None, kind: str
) -> OptionSweep | None:
    """The option of ``given`` that lists several values to choose from on val, if any.

    A list is a sweep for an option whose default is a single number; for a tuple-valued
    option it is the option's value. Every listed value is checked as
    :func:`parse_options` checks a single one, with the other options as given.

    Args:
        options_type: the method's frozen ``Options`` dataclass.
        given: option values by name, as read from params (lists as lists).
        kind: the method kind, named when an option is unknown.

    Returns:
        The sweep, or ``None`` when every option has a single value.

    Raises:
        ConfigError: lists for two options, a list for an option that takes one name or
            flag, an empty list, a value listed twice, or a listed value of the wrong type or
            out of range; it names the options class and the field.
    """
    given = dict(given or {})
    defaults = option_defaults(options_type)
    listed = [key for key, value in given.items() if isinstance(value, list)
              and key in defaults and not isinstance(defaults[key], tuple)]
    if not listed:
        return None
    option, *others = listed
    owner = options_type.__name__
    if others:
        raise ConfigError(owner, others[0], f"lists values too, besides '{option}': sweep one "
                          "option at a time", given[others[0]])
    default, listed_values = defaults[option], given[option]
    if not is_sweepable(default):
        raise ConfigError(owner, option, f"takes one {_kind_of(default)}: only numeric options "
                          "are swept on val", listed_values)
    rule = ListOf(Interval(integer=isinstance(default, int)))
    problem = rule.problem(listed_values)
    if problem is not None:
        raise ConfigError(owner, option, problem, listed_values)
    values = tuple(coerce_like(default, value, owner, option) for value in listed_values)
    parse_options(options_type, {**given, option: default}, kind)  # the other options alone
    for value in values:
        try:
            parse_options(options_type, {**given, option: value}, kind)
        except ConfigError as error:
            if error.field == option:
                raise ConfigError(owner, option, f"lists {value!r}, which {error.problem}",
                                  listed_values) from None
            # a rule tying two options together, broken by this value only
            raise ConfigError(owner, error.field, f"{error.problem} when {option} is {value!r} "
                              "(one of its listed values)", error.value) from None
    return OptionSweep(option, values)


def _kind_of(default: Any) -> str:
    return "flag" if isinstance(default, bool) else "name" if isinstance(default, str) else "value"
