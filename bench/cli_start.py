"""How long a user waits for `tailbank check` and `tailbank --help`, beside the interpreter's
own start, each in a fresh process (the way a user or DVC starts them).

    python bench/cli_start.py            # median of 5 of each, in a tiny copy of params.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "faiss", "nflows")


def _seconds(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def heavy_imports(cwd: Path, *args: str) -> list[str]:
    """The heavy libraries ``tailbank args`` imports (from ``-X importtime``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "stages.cli", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    return sorted(name for name in HEAVY if name in imported)


def measure(repeats: int = 5) -> dict[str, Any]:
    """Median wall seconds of `check`, `--help` and a bare interpreter start."""
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        shutil.copy(REPO / "params.yaml", project / "params.yaml")
        shutil.copy(REPO / "dvc.yaml", project / "dvc.yaml")
        shutil.copytree(REPO / "pipelines", project / "pipelines")  # each bank's dvc.yaml
        commands = {"check": [sys.executable, "-m", "stages.cli", "check"],
                    "help": [sys.executable, "-m", "stages.cli", "--help"],
                    "python": [sys.executable, "-c", "pass"]}
        _seconds(commands["check"], project)  # warm the page cache and .pyc files
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(repeats):  # interleaved, so a busy moment hits all alike
            for name, command in commands.items():
                times[name].append(_seconds(command, project))
        return {**{f"{name}_s": statistics.median(values) for name, values in times.items()},
                "repeats": repeats, "heavy_imports": heavy_imports(project, "check")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print(json.dumps(measure(parser.parse_args().repeats), indent=2))


if __name__ == "__main__":
    main()
