"""The `Constrained` base: a config dataclass checks its declared constraints when built."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import pytest

from core.constraints import POSITIVE_INT, ConfigFieldError, Constrained, OneOf, Rule


class ExampleError(ConfigFieldError):
    """A library's own error class."""


@dataclass(frozen=True)
class Example(Constrained, error=ExampleError):
    epochs: int = 3
    mode: str = "a"

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {"epochs": POSITIVE_INT, "mode": OneOf(("a", "b"))}


@dataclass(frozen=True)
class Tied(Example):
    """A subclass with a rule tying two fields, checked after the table."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode == "b" and self.epochs > 5:
            raise ExampleError("Tied", "epochs", "must be at most 5 in mode b", self.epochs)


def test_a_value_its_rule_refuses_raises_the_library_error_naming_the_field() -> None:
    with pytest.raises(ExampleError) as caught:
        Example(epochs=0)
    assert (caught.value.owner, caught.value.field, caught.value.value) == ("Example", "epochs", 0)


def test_the_base_adds_no_fields_and_the_config_stays_frozen() -> None:
    example = Example()
    assert [entry.name for entry in dataclasses.fields(example)] == ["epochs", "mode"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.epochs = 4  # type: ignore[misc]


def test_a_subclass_inherits_the_error_and_checks_the_table_before_its_own_rules() -> None:
    assert Tied.ERROR is ExampleError
    with pytest.raises(ExampleError, match="must be one of"):
        Tied(epochs=9, mode="c")
    with pytest.raises(ExampleError, match="at most 5"):
        Tied(epochs=9, mode="b")
    assert Tied(epochs=9).epochs == 9


def test_without_an_error_keyword_the_base_error_is_raised() -> None:
    @dataclass
    class Plain(Constrained):
        size: int = 1
        CONSTRAINTS: ClassVar[dict[str, Rule]] = {"size": POSITIVE_INT}

    with pytest.raises(ConfigFieldError, match=r"Plain\.size must be >= 1"):
        Plain(size=0)
