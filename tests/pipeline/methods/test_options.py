"""Method options: defaults, strict keys and YAML-friendly type checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from core.constraints import NON_NEGATIVE, Constrained, Rule
from pipeline.errors import ConfigError, PipelineError
from pipeline.methods.options import OptionSweep, find_sweep, option_defaults, parse_options


@dataclass(frozen=True)
class ExampleOptions:
    alpha: float = 0.01
    queue_size: int = 1024
    dims: tuple[int, ...] = (64, 32)
    learnable: bool = False
    mode: str = "paper"


def test_defaults_in_field_order() -> None:
    assert option_defaults(ExampleOptions) == {
        "alpha": 0.01,
        "queue_size": 1024,
        "dims": (64, 32),
        "learnable": False,
        "mode": "paper",
    }


def test_missing_keys_keep_defaults_and_yaml_types_are_converted() -> None:
    options = parse_options(ExampleOptions, {"alpha": 1, "dims": [8, 4]}, "example")
    assert options == ExampleOptions(alpha=1.0, dims=(8, 4))
    assert isinstance(options.alpha, float)
    assert parse_options(ExampleOptions, None, "example") == ExampleOptions()


def test_unknown_key_names_the_full_key_and_the_closest() -> None:
    """The library names the options class and field; `stages.configs` turns that into the
    params key ``methods.<name>.options.<key>`` (tests/test_bad_input.py)."""
    with pytest.raises(ConfigError, match=r"ExampleOptions\.queue is not an option.*'queue_size'") as caught:
        parse_options(ExampleOptions, {"queue": 10}, "example")
    assert (caught.value.owner, caught.value.field) == ("ExampleOptions", "queue")


@pytest.mark.parametrize(
    ("key", "value"),
    [("queue_size", 2.5), ("queue_size", True), ("learnable", 1), ("mode", 3), ("alpha", "x")],
)
def test_wrong_types_are_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"ExampleOptions\.{key} must be of type") as caught:
        parse_options(ExampleOptions, {key: value}, "example")
    assert isinstance(caught.value, PipelineError) and caught.value.field == key


def test_a_field_without_default_is_a_programming_error() -> None:
    @dataclass(frozen=True)
    class Broken:
        beta: float

    with pytest.raises(TypeError, match="needs a plain default"):
        option_defaults(Broken)


@dataclass(frozen=True)
class CheckedOptions(Constrained, error=ConfigError):
    """Options with declared constraints and a rule tying two of them together."""

    alpha: float = 0.01
    beta: float = 1.0
    queue_size: int = 1024
    dims: tuple[int, ...] = (64, 32)
    learnable: bool = False
    mode: str = "paper"

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {"alpha": NON_NEGATIVE, "beta": NON_NEGATIVE}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha > self.beta:
            raise ConfigError("CheckedOptions", "alpha", "must not exceed beta", self.alpha)


def test_a_list_for_a_numeric_option_is_a_sweep_in_the_order_given() -> None:
    given = {"beta": [5, 0.5, 2], "mode": "code"}
    sweep = find_sweep(CheckedOptions, given, "example")
    assert sweep == OptionSweep("beta", (5.0, 0.5, 2.0))
    assert all(isinstance(value, float) for value in sweep.values)
    assert sweep.candidates(given) == [{"beta": value, "mode": "code"} for value in (5.0, 0.5, 2.0)]
    assert [sweep.label(value) for value in sweep.values] == ["beta=5.0", "beta=0.5", "beta=2.0"]
    assert find_sweep(CheckedOptions, {"queue_size": [256, 1024]}, "example").values == (256, 1024)


def test_single_values_and_lists_of_list_valued_options_are_no_sweep() -> None:
    assert find_sweep(CheckedOptions, {"beta": 2.0, "dims": [8, 4]}, "example") is None
    assert find_sweep(CheckedOptions, None, "example") is None


@pytest.mark.parametrize(
    ("given", "field", "problem"),
    [
        ({"beta": []}, "beta", "must list at least one value"),
        ({"beta": [1, 2, 1]}, "beta", "lists 1 twice"),
        ({"beta": [1, "2"]}, "beta", "items must be a number"),
        ({"queue_size": [256, 0.5]}, "queue_size", "items must be an integer"),
        ({"beta": [1, True]}, "beta", "items must be a number"),
        ({"beta": [1, -2]}, "beta", "lists -2.0, which must be >= 0"),
        ({"beta": [1, float("inf")]}, "beta", "must be finite"),
        ({"beta": [1, 2], "alpha": [0, 1]}, "alpha", "besides 'beta': sweep one option at a time"),
        ({"mode": ["paper", "code"]}, "mode", "takes one name: only numeric options"),
        ({"learnable": [True, False]}, "learnable", "takes one flag"),
        ({"alpha": 0.5, "beta": [1, 0.2]}, "alpha", "must not exceed beta when beta is 0.2"),
        ({"beta": [1, 2], "alpha": -1.0}, "alpha", "must be >= 0"),
    ],
)
def test_bad_sweeps_name_the_option_and_the_problem(given: dict, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        find_sweep(CheckedOptions, given, "example")
    assert (caught.value.owner, caught.value.field) == ("CheckedOptions", field)
    assert problem in caught.value.problem
