"""Frozen records that read and write their own JSON, key for key, in field order.

A record's JSON object has one key per field, in the order the fields are declared (the key
is the field's name unless its metadata names another), so `to_json` writes the keys in the
order the analysis always wrote them. `from_json` is lenient the way the report has always
been: a missing key reads as None, a missing nested object as a record of Nones, so a partial
or older `analysis.json` still renders, with dashes where numbers are missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import Field, field, fields
from typing import Any, TypeVar

import numpy as np

_R = TypeVar("_R", bound="JsonRecord")
Parse = Callable[[Any], Any]


class JsonRecord:
    """Base of a frozen dataclass whose fields are JSON values, records or collections of them."""

    @classmethod
    def from_json(cls: type[_R], data: Any) -> _R:
        """The record of a parsed JSON object; anything but an object reads as all None."""
        data = data if isinstance(data, Mapping) else {}
        return cls(**{item.name: _parser(item)(data.get(_key(item))) for item in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        """The JSON object: plain dicts, lists, str, int, float, bool and None."""
        return {_key(item): _dump(getattr(self, item.name)) for item in fields(self)
                if not (item.metadata.get("omit_none") and getattr(self, item.name) is None)}


def json_field(parse: Parse | None = None, key: str | None = None, omit_none: bool = False,
               default: Any = None) -> Any:
    """A record field read by `parse` (default: the value as is) from JSON key `key`
    (default: the field's name). With ``omit_none`` the key is left out while the value is
    None (a field that only some results have, e.g. how an IVF index was searched); such a
    field takes ``default`` when not given."""
    metadata: dict[str, Any] = {}
    if parse is not None:
        metadata["parse"] = parse
    if key is not None:
        metadata["key"] = key
    if omit_none:
        metadata["omit_none"] = True
        return field(default=default, metadata=metadata)
    return field(metadata=metadata)


def values(value: Any) -> tuple[Any, ...] | None:
    """A JSON list of scalars as a tuple; None stays None."""
    return None if value is None else tuple(value)


def record(cls: type[_R]) -> Callable[[Any], _R]:
    """Parses a nested object; a missing one reads as a record of Nones."""
    return cls.from_json


def optional(cls: type[_R]) -> Callable[[Any], _R | None]:
    """Parses a nested object that is null by design (e.g. no logits, no posterior)."""
    return lambda value: None if value is None else cls.from_json(value)


def records(cls: type[_R]) -> Callable[[Any], tuple[_R, ...]]:
    """Parses a list of objects; a missing list reads as empty."""
    return lambda value: tuple(cls.from_json(item) for item in value or ())


def named(cls: type[_R]) -> Callable[[Any], dict[str, _R]]:
    """Parses an object of objects (name -> record), keeping the names' order."""
    return lambda value: {str(name): cls.from_json(item) for name, item in (value or {}).items()}


def json_value(value: Any) -> Any:
    """Plain Python values for json.dump: arrays to lists, numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_value(value.tolist())
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return str(value)
    if value is None:
        return None
    raise TypeError(f"cannot make {type(value).__name__} JSON-ready")


def _key(item: Field) -> str:
    return item.metadata.get("key", item.name)


def _parser(item: Field) -> Parse:
    return item.metadata.get("parse", lambda value: value)


def _dump(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_json()
    if isinstance(value, Mapping):
        return {key: _dump(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [_dump(item) for item in value]
    return value
