"""Shared fixtures of the learning-library tests."""

from tests.pipeline.models.conftest import single_thread  # noqa: F401  (autouse fixture)
