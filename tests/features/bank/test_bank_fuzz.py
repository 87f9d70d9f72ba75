"""Fuzzing the bank reader: a damaged file is refused in one line, never read as a bank."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.bank import Bank
from features.errors import FeaturesError
from tests.features.bank.test_bank import write_bank


@pytest.fixture(scope="module")
def valid_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "bank.h5"
    write_bank(path)
    return path.read_bytes()


def _read_everything(path: Path) -> None:
    with Bank.open(path) as bank:
        for split in bank.splits:
            bank.features(split), bank.labels(split), bank.index(split), bank.logits(split)
            for name in bank.extra_names(split):
                bank.extra(split, name)


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        _read_everything(path)
    except FeaturesError as error:
        message = str(error)
        assert "\n" not in message and str(path) in message, message


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                      min_size=1, max_size=8))
def test_flipped_bytes_are_refused_or_read(valid_bytes: bytes, tmp_path: Path, edits) -> None:
    data = bytearray(valid_bytes)
    for where, value in edits:
        data[int(where * len(data))] = value
    _check(tmp_path / "bank.h5", bytes(data))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keep=st.floats(0, 1, exclude_max=True))
def test_truncated_banks_are_refused(valid_bytes: bytes, tmp_path: Path, keep: float) -> None:
    path = tmp_path / "bank.h5"
    path.write_bytes(valid_bytes[: int(keep * len(valid_bytes))])
    with pytest.raises(FeaturesError, match="bank"):
        _read_everything(path)
