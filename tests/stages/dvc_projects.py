"""Throw-away DVC projects for the end-to-end tests: the code, a params file, dvc.yaml, git."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages import dag
from stages.warm import SOCKET_ENV
from tests.conftest import SMALL_PROJECT_GROUP
from tests.stages import warm_servers
from tests.stages.conftest import REPO, tiny_params

PER_METHOD = ("pretrain", "dump", "classify", "dlsa", "analyze")
# a method trained on its own and a teacher with its student: every kind of branch
SMALL_METHODS = ("ce", "gml_teacher", "gml_student")
ON_SMALL_PROJECT = pytest.mark.xdist_group(SMALL_PROJECT_GROUP)


def dvc(project: Path, *args: str) -> str:
    """Run a dvc command in the project (its stages warm: `warm_servers.shared_socket`); fail
    the test with its output when it fails."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", SOCKET_ENV: warm_servers.shared_socket()}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def ran_stages(output: str) -> set[str]:
    """The stages a dvc command ran, by name (without the ``pipelines/<m>/dvc.yaml:`` of a
    branch's file)."""
    return set(re.findall(r"Running stage '(?:[^':]*dvc\.yaml:)?([^']+)'", output))


def branch(*methods: str, stages: tuple[str, ...] = PER_METHOD, seeds=(0,)) -> set[str]:
    """The per-method stages of ``methods`` (one per seed)."""
    return {f"{stage}-{method}@{seed}" for stage in stages for method in methods
            for seed in seeds}


def new_project(root: Path, params: dict[str, Any]) -> Path:
    """A git + DVC project in ``root``: tailbank's packages, ``params`` and its dvc.yaml files
    (`stages.dag.write`), the plots' templates; nothing run yet."""
    root.mkdir(parents=True, exist_ok=True)
    for package in ("core", "pipeline", "features", "stages"):
        shutil.copytree(REPO / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "docs/dvc", root / "docs/dvc")  # the top-level plots' templates
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    dag.write(params, root)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    return root


def small_params() -> dict[str, Any]:
    """`tiny_params` for `SMALL_METHODS`, one epoch and one filter: a DAG whose branches are
    what the rerun tests look at, not what they compute."""
    params = tiny_params()
    params["methods"] = {name: params["methods"][name] for name in SMALL_METHODS}
    params["train"]["epochs"] = 1
    params["classify"].update(kinds=["linear", "balanced_softmax"], epochs=1)
    params["dlsa"].update(base_kinds=["balanced_softmax"], num_filters=1)
    params["dlsa"]["flow"]["epochs"] = 1
    params["dlsa"]["classifier"]["epochs"] = 1
    params["analyze"].update(tsne_samples=0, kmeans_niter=1)
    return params


def edit_params(project: Path, edit) -> None:
    """Apply ``edit`` (a function of the params dict) to the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    edit(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
