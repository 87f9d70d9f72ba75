"""Fixtures shared by the whole suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Run each test single-threaded: torch, and faiss (its own OpenMP pool) where a test
    module imported it.

    The tensors of the tests are tiny, so OpenMP threads only add synchronisation cost, which
    grows to seconds per step when other processes share the two cores of a CI machine.
    """
    faiss = sys.modules.get("faiss")
    threads = torch.get_num_threads()
    faiss_threads = faiss.omp_get_max_threads() if faiss is not None else None
    torch.set_num_threads(1)
    if faiss is not None:
        faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    if faiss is not None:
        faiss.omp_set_num_threads(faiss_threads)
