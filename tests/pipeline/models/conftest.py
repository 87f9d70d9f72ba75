"""Run these tests single-threaded: their tensors are tiny, so OpenMP threads only add
synchronisation cost, which becomes seconds per step when other processes share the cores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
