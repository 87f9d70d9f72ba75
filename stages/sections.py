"""Params sections generated from the library configs they configure.

A library config dataclass (`features.configs.FlowTrainConfig`, `pipeline.engine.config.
TrainConfig`, ...) owns its fields: their types, their defaults and their ``CONSTRAINTS``. A
params section takes some of them over through a `Source`, and `section_model` writes the
pydantic model from the dataclass: a strict type per field, the library's default, pydantic's
bounds for an `Interval`, a validator for any other rule. The stage layer adds only what is
its own (devices, seeds, paths, what to run), so no default or range is written twice, and
`values` hands a section's values back to the library under the library's field names.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    create_model,
    model_serializer,
)

from core.constraints import DeviceName, Flag, Interval, ListOf, OneOf, Rule
from core.names import did_you_mean

# Values are never coerced: `epochs: true` or `lr: "0.1"` are errors, not 1 and 0.1. An int is
# a valid float (YAML writes 1.0 as 1 when a user types it so).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
_STRICT: dict[Any, Any] = {int: Int, float: Float, bool: Bool, str: Str}


class StrictSection(BaseModel):
    """Base of every section: unknown keys are errors, values are never coerced silently, and
    numbers are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class NewKeysSection(StrictSection):
    """A section with keys added after its outputs' digests were first recorded.

    Models and banks carry `stages.params.section_digest`, the sha256 of their sections'
    dumps, so a new key in a dump would change every digest (and the bytes of every model)
    although nothing trained differently. Such keys are therefore dumped only when set to
    something other than their default: a params file that does not use them dumps, and
    digests, exactly as before they existed, and one that does gets a digest of its own.

    Attributes:
        new_key_defaults: each new key mapped to its default (set by `section_model`).
    """

    new_key_defaults: ClassVar[Mapping[str, Any]] = {}

    @model_serializer(mode="wrap")
    def _leave_out_new_defaults(self, handler: SerializerFunctionWrapHandler) -> Any:
        dumped = handler(self)
        for key, default in self.new_key_defaults.items():
            if getattr(self, key) == default:
                dumped.pop(key, None)
        return dumped


@dataclass(frozen=True)
class Source:
    """Fields of a library config that a params section holds.

    Attributes:
        config: the library's config dataclass.
        section: the dotted params path of the section, e.g. ``"dlsa.flow"``.
        keys: library field -> key in the section (most keep their name).
        nullable: fields the section may leave null for the stage to fill in from the data
            (``dlsa.flow.num_clusters: null`` = half the classes); their rule applies to a
            value given.
        new: fields added to the library config after the section's digests were recorded:
            dumped only when not at their default (see `NewKeysSection`).
    """

    config: type
    section: str
    keys: Mapping[str, str]
    nullable: frozenset[str] = frozenset()
    new: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        config: type,
        section: str,
        *,
        fields: Iterable[str] | None = None,
        exclude: Iterable[str] = (),
        rename: Mapping[str, str] | None = None,
        nullable: Iterable[str] = (),
        new: Iterable[str] = (),
    ) -> Source:
        """The fields of ``config`` held by ``section``.

        Args:
            config: the library's config dataclass.
            section: the dotted params path of the section.
            fields: the library fields held; default: those renamed if any, else every field.
            exclude: library fields left out (supplied by the stage: seed, device, nested).
            rename: library field -> params key, where they differ.
            nullable: see the class attributes.
            new: see the class attributes.
        """
        rename = dict(rename or {})
        names = list(fields) if fields is not None else (
            list(rename) if rename else [field.name for field in dataclasses.fields(config)])
        keys = {name: rename.get(name, name) for name in names if name not in set(exclude)}
        return cls(config, section, keys, frozenset(nullable), frozenset(new))

    def field(self, name: str) -> dataclasses.Field[Any]:
        """The dataclass field ``name`` of the config."""
        return {field.name: field for field in dataclasses.fields(self.config)}[name]

    def default(self, name: str) -> Any:
        """The library's default of field ``name`` (None for a nullable one)."""
        if name in self.nullable:
            return None
        field = self.field(name)
        if field.default is not dataclasses.MISSING:
            return field.default
        raise TypeError(f"{self.config.__name__}.{name} has no plain default to take over")


def section_model(
    name: str,
    doc: str,
    sources: Iterable[Source] = (),
    **stage_fields: Any,
) -> type[BaseModel]:
    """A strict pydantic section holding the fields of ``sources`` and the stage's own.

    Args:
        name: the model's class name, e.g. ``"FlowParams"``.
        doc: its docstring.
        sources: library fields the section holds, in order.
        stage_fields: the stage's own fields, ``key=(annotation, default or Field(...))``.

    Returns:
        The model class; its library fields have the library's types, defaults and rules.
    """
    definitions: dict[str, Any] = {}
    new_key_defaults: dict[str, Any] = {}
    for source in sources:
        hints = typing.get_type_hints(source.config)
        rules: Mapping[str, Rule] = getattr(source.config, "CONSTRAINTS", {})
        for field, key in source.keys.items():
            nullable = field in source.nullable
            annotation, bounds = _field(hints[field], rules.get(field), nullable)
            definitions[key] = (annotation, Field(source.default(field), **bounds))
            if field in source.new:
                new_key_defaults[key] = source.default(field)
    definitions.update(stage_fields)
    base = NewKeysSection if new_key_defaults else StrictSection
    model = create_model(name, __base__=base, __doc__=doc, __module__=__name__, **definitions)
    if new_key_defaults:
        model.new_key_defaults = new_key_defaults
    return model


def values(source: Source, section: BaseModel) -> dict[str, Any]:
    """The section's values of ``source``'s fields, under the library's field names."""
    return {field: getattr(section, key) for field, key in source.keys.items()}


def known(choices: tuple[str, ...]) -> AfterValidator:
    """A validator of a name among ``choices`` (a torch-free registry's names)."""
    return AfterValidator(lambda name: one_of(name, choices))


def one_of(name: str, choices: tuple[str, ...]) -> str:
    """``name`` if it is one of ``choices``; else a ValueError naming the closest choice."""
    if name in choices:
        return name
    raise ValueError(f"unknown name '{name}'{did_you_mean(name, choices)}; choose one of: "
                     f"{', '.join(choices)}")


def device_name(name: str) -> str:
    """``name`` if it names a device (auto, cpu, cuda, cuda:N); else a ValueError."""
    if DeviceName().problem(name) is None:
        return name
    raise ValueError(f"'{name}' is not a device; use auto, cpu, cuda or cuda:N")


Device = Annotated[str, Strict(), AfterValidator(device_name)]


def _field(hint: Any, rule: Rule | None, nullable: bool) -> tuple[Any, dict[str, float]]:
    """The strict annotation and pydantic bounds of one library field under its rule."""
    annotation = _strict(hint)
    if isinstance(rule, OneOf):
        annotation = _choices(annotation, rule.choices)
    elif isinstance(rule, Interval) and not nullable:
        # pydantic's own bounds, so that ranges read as every other params range
        return annotation, _bounds(rule)
    elif rule is not None and not isinstance(rule, Flag):
        annotation = Annotated[annotation, AfterValidator(_checker(rule))]
    if nullable:
        annotation = annotation | None
    return annotation, {}


def _strict(hint: Any) -> Any:
    """``hint`` with each of int, float, bool and str made strict (inside unions and tuples)."""
    if hint in _STRICT:
        return _STRICT[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        strict = [_strict(arg) for arg in args]
        union = strict[0]
        for arg in strict[1:]:
            union = union | arg
        return union
    if origin is tuple:
        return tuple[tuple(_strict(arg) if arg is not Ellipsis else arg for arg in args)]
    return hint


def _choices(annotation: Any, choices: tuple[Any, ...]) -> Any:
    """A fixed set of names as a validated str; names and flags (``"auto"``, True, False) as a
    union of a flag and those names."""
    names = tuple(choice for choice in choices if isinstance(choice, str))
    if len(names) == len(choices):
        return Annotated[Str, AfterValidator(lambda value: one_of(value, names))]
    return Bool | Literal[names]


def _bounds(rule: Interval) -> dict[str, float]:
    """pydantic's ge / gt / le / lt of an `Interval`."""
    bounds = {}
    if rule.low is not None:
        bounds["gt" if rule.low_open else "ge"] = rule.low
    if rule.high is not None:
        bounds["lt" if rule.high_open else "le"] = rule.high
    return bounds


def _checker(rule: Rule) -> Callable[[Any], Any]:
    """A pydantic after-validator that applies ``rule`` to a value (tuples, list rules)."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        problem = rule.problem(list(value) if isinstance(rule, ListOf) else value)
        if problem is not None:
            raise ValueError(problem)
        return value

    return check
