"""Fixtures shared by the tests of pipeline.data."""

from __future__ import annotations

import pytest

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.sources import load_digits_source


@pytest.fixture
def digits_source() -> DatasetSource:
    """scikit-learn's bundled digits (no download)."""
    return load_digits_source()
