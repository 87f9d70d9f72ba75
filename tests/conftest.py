"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import torch

# The end-to-end tests launch DVC stages as subprocesses: one thread each, like the tests
# themselves, so that two xdist workers on a 2-core machine do not fight over the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Prepare the items for xdist's ``--dist loadgroup`` (pyproject's addopts).

    A test runs in its module's group (its module-scoped fixtures are built once) unless it
    names a group of its own (the tests sharing the session's small DVC project); the slow
    end-to-end groups come first, so the two longest start at once on two workers instead of
    one of them starting last (xdist hands each worker one group, then the next in this
    order as it finishes).
    """
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))

    def start(item: pytest.Item) -> tuple[int, int]:
        group = item.get_closest_marker("xdist_group").args[0]
        longest = LONGEST_GROUPS.index(group) if group in LONGEST_GROUPS else len(LONGEST_GROUPS)
        return longest, item.get_closest_marker("slow") is None

    items.sort(key=start)


# The xdist group of the tests on the session's `small_project` (tests/stages/conftest.py):
# one worker builds it and runs them all (`tests.stages.dvc_projects.ON_SMALL_PROJECT`).
SMALL_PROJECT_GROUP = "small_project"
# The two DVC projects the end-to-end tests share, several minutes each: one per worker first.
LONGEST_GROUPS = ("tests/stages/test_dvc_pipeline.py", SMALL_PROJECT_GROUP)


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
