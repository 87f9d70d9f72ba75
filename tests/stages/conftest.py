"""Fixtures for the stage tests: a tiny params file that runs the whole DAG in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_params() -> dict[str, Any]:
    """The repository's params.yaml shrunk to a few epochs of a small backbone."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(backbone="resnet20", epochs=2, batch_size=128)
    params["train"]["schedule"].update(warmup_epochs=0)
    params["classify"].update(epochs=3, crt_epochs=2, lws_epochs=2)
    params["dlsa"].update(base_kinds=["balanced_softmax", "cosine"])
    params["dlsa"]["flow"].update(epochs=3)
    params["dlsa"]["classifier"].update(epochs=5)
    params["analyze"].update(tsne_samples=100, kmeans_niter=5)
    for entry in params["methods"].values():
        entry.pop("train", None)  # e.g. the ResNet-56 of the GML teacher
    return params


@pytest.fixture
def write_params(tmp_path: Path):
    """Write a params dict (tiny by default, with edits) to tmp_path/params.yaml."""

    def write(params: dict[str, Any] | None = None, path: Path | None = None) -> Path:
        target = path or tmp_path / "params.yaml"
        target.write_text(yaml.safe_dump(params if params is not None else tiny_params()))
        return target

    return write


@pytest.fixture(scope="session")
def small_project(tmp_path_factory) -> Path:
    """A DVC project of `dvc_projects.SMALL_METHODS` after one full `dvc repro` (session-wide:
    the rerun tests of test_dvc_pipeline.py and the seed test of test_dag.py share it, in one
    xdist group)."""
    from tests.stages.dvc_projects import (
        SMALL_METHODS,
        branch,
        dvc,
        new_project,
        ran_stages,
        small_params,
    )

    root = new_project(tmp_path_factory.mktemp("small") / "project", small_params())
    assert ran_stages(dvc(root, "repro")) == {"prepare", "report"} | branch(*SMALL_METHODS)
    return root
