"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each test single-threaded.

    The tensors of the tests are tiny, so OpenMP threads only add synchronisation cost, which
    grows to seconds per step when other processes share the two cores of a CI machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
