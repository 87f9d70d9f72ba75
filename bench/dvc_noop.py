"""DVC no-op: wall time of `dvc repro` when every stage is up to date (goal < 5 s).

`dvc repro` is never run in the working repository (its outputs may be stale or in use).
Instead a project is built in a temporary folder the way tests/stages/test_dvc_pipeline.py
does it: the code packages, the DAG's dvc.yaml files and its params.yaml shrunk to tiny
epochs (same methods, so the same DAG of stages), `git init`, `dvc init`, one untimed full
`dvc repro`. Then `dvc repro` and, as the floor of any DVC command that has to read the
pipeline and check its dependencies, `dvc status` are timed alternately; the medians count.

    python bench/dvc_noop.py                  # every method of params.yaml (the default DAG)
    python bench/dvc_noop.py --methods ce     # one branch only: quicker to build
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from stages import dag

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "pipeline", "features", "stages")


def tiny_params(methods: list[str] | None) -> dict[str, Any]:
    """params.yaml shrunk to seconds per stage, as in tests/stages/conftest.py."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(backbone="resnet20", epochs=2, batch_size=128)
    params["train"]["schedule"].update(warmup_epochs=0)
    params["classify"].update(epochs=3, crt_epochs=2, lws_epochs=2)
    params["dlsa"]["flow"].update(epochs=3)
    params["dlsa"]["classifier"].update(epochs=5)
    params["analyze"].update(tsne_samples=100, kmeans_niter=5)
    if methods:
        params["methods"] = {name: params["methods"][name] for name in methods}
    for entry in params["methods"].values():
        entry.pop("train", None)  # e.g. the ResNet-56 of the GML teacher
    return params


def dvc(project: Path, *args: str) -> str:
    """Run a dvc command in `project`; exit with its output when it fails."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def build_project(root: Path, methods: list[str] | None) -> int:
    """Code, the DAG's dvc.yaml files and tiny params in `root`, reproduced once; returns the
    stage count."""
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    params = tiny_params(methods)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    dag.write(params, root)  # dvc.yaml and pipelines/<m>/dvc.yaml for these methods
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    output = dvc(root, "repro")
    return len(set(re.findall(r"Running stage '(?:[^':]*dvc\.yaml:)?([^']+)'", output)))


def measure(
    methods: list[str] | None = None, repeats: int = 3, folder: str | None = None
) -> dict[str, Any]:
    """Median seconds of a no-op `dvc repro` and of `dvc status` on a reproduced project.

    Args:
        methods: Methods of the DAG (None = every method of params.yaml).
        repeats: Timed runs of each command, alternating.
        folder: Where the temporary project goes (default: the system's temporary folder).

    Returns:
        The stage count, median seconds of each command and their ratio repro / status.

    Raises:
        SystemExit: a dvc command fails, or the no-op repro ran a stage.
    """
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        root = Path(tmp)
        stages = build_project(root, methods)
        if "changed" in dvc(root, "status"):
            raise SystemExit("dvc status is not clean after a full repro; cannot time a no-op")
        times: dict[str, list[float]] = {"repro": [], "status": []}
        for _ in range(repeats):
            for command in ("repro", "status"):
                start = time.perf_counter()
                output = dvc(root, command)
                times[command].append(time.perf_counter() - start)
                if command == "repro" and "Running stage" in output:
                    raise SystemExit(f"the no-op dvc repro ran stages:\n{output}")
    median = {name: float(np.median(values)) for name, values in times.items()}
    return {
        "methods": len(tiny_params(methods)["methods"]),
        "stages": stages,
        "repeats": repeats,
        "repro_s": median["repro"],
        "status_s": median["status"],
        "ratio": median["repro"] / median["status"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", default=None, help="comma-separated methods (default: all of params.yaml)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folder", default=None, help="temporary folder (default: system's)")
    args = parser.parse_args()
    methods = args.methods.split(",") if args.methods else None
    result = measure(methods, args.repeats, args.folder)
    print(
        f"dvc no-op on a reproduced tiny project: {result['stages']} stages "
        f"({result['methods']} methods), median of {result['repeats']}"
    )
    print(f"{'command':<22}{'seconds':>9}")
    print(f"{'dvc repro (no-op)':<22}{result['repro_s']:>9.2f}")
    print(f"{'dvc status':<22}{result['status_s']:>9.2f}")
    print(f"ratio repro / status: {result['ratio']:.2f}; goal: repro < 5 s")


if __name__ == "__main__":
    main()
