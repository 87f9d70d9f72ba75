"""Warm start (`tailbank warm`): `dvc repro --force` of a tiny DAG with each stage started
cold (a fresh interpreter imports torch, scikit-learn, scipy) and warm (a fork of a server
that has imported them), alternately, in one run; the outputs must be the same bytes.

The project is built as `bench/dvc_noop.py` builds it (tiny params, one full untimed repro).
The server's own start (its imports, once per session) is timed apart.

    python bench/warm_start.py                 # the ce branch: 7 stages
    python bench/warm_start.py --methods ce,bsce --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dvc_noop  # noqa: E402

from stages.warm import SOCKET_ENV  # noqa: E402
from stages.warm.command import await_listening  # noqa: E402


def output_digests(root: Path) -> dict[str, str]:
    """Every stage output's md5 as the dvc.lock files record it."""
    digests: dict[str, str] = {}
    for lock in [root / "dvc.lock", *sorted(root.glob("pipelines/*/dvc.lock"))]:
        for stage in yaml.safe_load(lock.read_text())["stages"].values():
            digests.update({out["path"]: out["md5"] for out in stage.get("outs", [])})
    return digests


def measure(methods: list[str], repeats: int = 2) -> dict[str, Any]:
    """Median seconds of a forced repro cold and warm, the server's start, and whether every
    run wrote the same bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stages = dvc_noop.build_project(root, methods)
        reference = output_digests(root)
        path = root / "warm.sock"
        start = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "stages.warm", str(path), "3600"])
        await_listening(server, path)
        # the server's imports: the first warm command waits for them
        subprocess.run(["tailbank", "--version"], env={**os.environ, SOCKET_ENV: str(path)},
                       check=True, capture_output=True)
        server_start = time.perf_counter() - start
        times: dict[str, list[float]] = {"cold": [], "warm": []}
        same = True
        try:
            for _ in range(repeats):
                for mode in ("cold", "warm"):
                    if mode == "warm":
                        os.environ[SOCKET_ENV] = str(path)
                    start = time.perf_counter()
                    output = dvc_noop.dvc(root, "repro", "--force")
                    times[mode].append(time.perf_counter() - start)
                    os.environ.pop(SOCKET_ENV, None)
                    if mode == "warm" and "running cold" in output:
                        raise SystemExit(f"the warm repro ran cold:\n{output}")
                    same &= output_digests(root) == reference
        finally:
            server.terminate()
            server.wait()
    median = {mode: statistics.median(values) for mode, values in times.items()}
    return {"methods": methods, "stages": stages, "repeats": repeats,
            "cold_s": median["cold"], "warm_s": median["warm"],
            "ratio": median["warm"] / median["cold"], "server_start_s": server_start,
            "same_bytes": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="ce", help="comma-separated methods")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.methods.split(","), args.repeats), indent=2))


if __name__ == "__main__":
    main()
