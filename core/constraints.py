"""Declared constraints of library configs, checked when a config is built.

Each library config dataclass declares ``CONSTRAINTS``, a table of field name -> rule (the way
scikit-learn keeps ``_parameter_constraints`` beside an estimator), and derives from
`Constrained`, whose ``__post_init__`` checks it with `check_constraints`; rules that tie two
fields together raise the same `ConfigFieldError` by hand, in a ``__post_init__`` that calls
the base's first. The error carries the config, the field, the problem and the value,
so the layer that reads a params file can name its own key (``dlsa.flow.lr``) instead of the
library's (``FlowTrainConfig.lr``). Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar


class ConfigFieldError(Exception):
    """A library config was given a value its constraints refuse.

    Attributes:
        owner: the config class, e.g. ``"FlowTrainConfig"``.
        field: the field, e.g. ``"lr"``.
        problem: what is wrong, e.g. ``"must be > 0"``.
        value: the value given.
    """

    def __init__(self, owner: str, field: str, problem: str, value: Any) -> None:
        self.owner, self.field, self.problem, self.value = owner, field, problem, value
        super().__init__(f"{owner}.{field} {problem}, got {value!r}")


@dataclass(frozen=True)
class Interval:
    """A finite real number (an integer when ``integer``) within bounds; None if ``optional``.

    Bounds are inclusive unless ``low_open`` / ``high_open``; booleans are never numbers.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, or None when it satisfies the rule."""
        if value is None:
            return None if self.optional else "must be set"
        kind = int if self.integer else Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"must be {'an integer' if self.integer else 'a number'}"
        if not math.isfinite(value):
            return "must be finite"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {_number(self.high)}"
        return None


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    choices: tuple[Any, ...]

    def problem(self, value: Any) -> str | None:
        if value in self.choices and type(value) in {type(choice) for choice in self.choices}:
            return None
        return f"must be one of {', '.join(map(repr, self.choices))}"


@dataclass(frozen=True)
class Flag:
    """True or False."""

    def problem(self, value: Any) -> str | None:
        return None if isinstance(value, bool) else "must be true or false"


@dataclass(frozen=True)
class ListOf:
    """A non-empty sequence (unless ``allow_empty``) of items, each within ``item``: distinct
    unless ``repeats``, strictly increasing when ``increasing``."""

    item: Interval | OneOf
    allow_empty: bool = False
    increasing: bool = False
    repeats: bool = False

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
            return "must be a list"
        items = list(value)
        if not items and not self.allow_empty:
            return "must list at least one value"
        for item in items:
            problem = self.item.problem(item)
            if problem is not None:
                return f"items {problem} (item {item!r})"
        if not self.repeats and len(set(items)) != len(items):
            repeated = next(item for item in items if items.count(item) > 1)
            return f"lists {repeated!r} twice; list each value once"
        if self.increasing and items != sorted(items):
            return "must be increasing"
        return None


@dataclass(frozen=True)
class DeviceName:
    """A torch device name: auto (CUDA when present), cpu, cuda or cuda:N."""

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and (
            value in ("auto", "cpu", "cuda")
            or (value.startswith("cuda:") and value[5:].isdigit())
        ):
            return None
        return "must be a device: auto, cpu, cuda or cuda:N"


Rule = Interval | OneOf | Flag | ListOf | DeviceName

POSITIVE_INT = Interval(1, integer=True)
NON_NEGATIVE_INT = Interval(0, integer=True)
POSITIVE = Interval(0, low_open=True)
NON_NEGATIVE = Interval(0)
UNIT_OPEN_HIGH = Interval(0, 1, high_open=True)
# Seeds reach numpy (< 2**32), torch and faiss (a C int, < 2**31) with small per-stream
# offsets (seed + filter, seed + rank, ...): below 2**30 every one of them fits.
SEED = Interval(0, 2**30 - 1, integer=True)


def check_constraints(
    config: Any, constraints: Mapping[str, Rule], error: type[ConfigFieldError]
) -> None:
    """Raise ``error`` for the first field of ``config`` that breaks its rule.

    Args:
        config: a dataclass instance.
        constraints: field name -> rule.
        error: the library's `ConfigFieldError` subclass.
    """
    owner = type(config).__name__
    for name, rule in constraints.items():
        value = getattr(config, name)
        problem = rule.problem(value)
        if problem is not None:
            raise error(owner, name, problem, value)


class Constrained:
    """Base of a config dataclass that checks its ``CONSTRAINTS`` when built.

    The library's error class is a class keyword, inherited by subclasses::

        @dataclass(frozen=True)
        class ProbeConfig(Constrained, error=ConfigError):
            epochs: int = 30
            CONSTRAINTS: ClassVar[dict[str, Rule]] = {"epochs": POSITIVE_INT}

    It has no fields, so it suits frozen dataclasses too. A config with rules beyond the table
    overrides ``__post_init__`` and calls ``super().__post_init__()`` first.

    Attributes:
        CONSTRAINTS: field name -> rule.
        ERROR: the `ConfigFieldError` subclass raised for a field that breaks its rule.
    """

    CONSTRAINTS: ClassVar[Mapping[str, Rule]] = {}
    ERROR: ClassVar[type[ConfigFieldError]] = ConfigFieldError

    def __init_subclass__(cls, error: type[ConfigFieldError] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if error is not None:
            cls.ERROR = error

    def __post_init__(self) -> None:
        check_constraints(self, self.CONSTRAINTS, self.ERROR)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
