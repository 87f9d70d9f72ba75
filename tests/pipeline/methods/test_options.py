"""Method options: defaults, strict keys and YAML-friendly type checks."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipeline.errors import ConfigError, PipelineError
from pipeline.methods.options import option_defaults, parse_options


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
