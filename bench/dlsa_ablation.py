"""What each departure from DLSA's paper and official code changes: one switch per row.

Fits the dlsa stage on the banks of a project (``banks/<method>/seed<s>.h5``, as ``dvc repro``
left them) once per row, each in a scratch folder that links the project's banks, splits and
models (the project's own results are never touched), and prints per bank the test accuracy of
the base (the first of ``dlsa.base_kinds``), of base + DLSA with every filter (the paper's
cascade) and as the val gate chose it, with the number of filters the gate kept:

    faithful            params.yaml's dlsa section (remainder refit, Eq. 7 with the instance
                        sampler, FC(x) from the head, flow latent, MAF affine, SGD at lr / m)
    remainder=base      the rows the filters leave go to the whole-bank base (tailbank before)
    mle=mean            the mean log-likelihood instead of Eq. 7's omega-weighted sum
    sampler=class_uniform  class-uniform MLE batches (the official code)
    init=none / base    FC(x) from scratch (tailbank before) / from the base classifier
    latent=feature      z is the raw feature, as the official code, not the flow latent
    affine=nflows       nflows' softplus-scaled MADE map instead of MAF's exp(-alpha)
    lr 0.2 unscaled     the paper's fixed SGD rate, not divided by Eq. 7's batch weight

    PYTHONPATH=. python bench/dlsa_ablation.py --project . --seed 0
    PYTHONPATH=. python bench/dlsa_ablation.py --project ../run --methods ce,bsce \
        --rows faithful,mle=mean
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROWS: dict[str, dict[str, Any]] = {
    "faithful": {},
    "remainder=base": {"dlsa.remainder": "base"},
    "mle=mean": {"dlsa.flow.mle": "mean"},
    "sampler=class_uniform": {"dlsa.flow.mle_sampler": "class_uniform"},
    "init=none": {"dlsa.init": "none"},
    "init=base": {"dlsa.init": "base"},
    "latent=feature": {"dlsa.latent": "feature"},
    "affine=nflows": {"dlsa.flow.affine": "nflows"},
    "lr 0.2 unscaled": {"dlsa.flow.lr": 0.2, "dlsa.flow.lr_scale": "none"},
}


def edited(raw: Mapping[str, Any], edits: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of params ``raw`` with each dotted key of ``edits`` set."""
    params = copy.deepcopy(dict(raw))
    for dotted, value in edits.items():
        *path, last = dotted.split(".")
        section = params
        for key in path:
            section = section[key]
        section[last] = value
    return params


def scratch(project: Path, folder: Path, raw: Mapping[str, Any]) -> None:
    """Link the project's banks, splits and trained models into ``folder``; write params."""
    for name in ("banks", "data"):
        (folder / name).symlink_to((project / name).resolve())
    (folder / "models").mkdir()
    for model in (project / "models").iterdir():
        if model.name != "dlsa":  # the stage writes models/dlsa: keep it in the scratch folder
            (folder / "models" / model.name).symlink_to(model.resolve())
    (folder / "params.yaml").write_text(yaml.safe_dump(dict(raw), sort_keys=False))


def fit(raw: Mapping[str, Any], method: str, seed: int) -> dict[str, Any]:
    """Run the dlsa stage in the current folder; the first base's numbers, or the error."""
    from stages.dlsa import run
    from stages.errors import USER_ERRORS
    from stages.params import parse_params

    params = parse_params(dict(raw), "params.yaml")
    base = params.dlsa.base_kinds[0]
    try:
        folder = run(params, method, seed)
    except USER_ERRORS as error:
        return {"error": str(error).splitlines()[0]}
    entry = json.loads((folder / "metrics.json").read_text())[base]
    return {"base": entry["base"]["overall"], "paper": entry["dlsa_paper"]["overall"],
            "gated": entry["dlsa"]["overall"], "filters": entry["filters"]}


def table(found: Mapping[str, Mapping[str, dict[str, Any]]], methods: Sequence[str]) -> str:
    """Markdown: per row, paper - base and gated - base in points for each bank, and means."""
    head = "| row | " + " | ".join(methods) + " | mean paper | mean gated |"
    lines = [head, "|" + "---|" * (len(methods) + 3)]
    for row, per_method in found.items():
        cells, papers, gates = [], [], []
        for method in methods:
            got = per_method[method]
            if "error" in got:
                cells.append("diverged" if "non-finite" in got["error"] else "error")
                continue
            paper, gated = 100 * (got["paper"] - got["base"]), 100 * (got["gated"] - got["base"])
            papers.append(paper)
            gates.append(gated)
            cells.append(f"{paper:+.1f} / {gated:+.1f} ({got['filters']})")
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {_mean(papers)} | {_mean(gates)} |")
    return "\n".join(lines)


def _mean(values: Sequence[float]) -> str:
    return f"{sum(values) / len(values):+.2f}" if values else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="", help="comma-separated; default: every bank")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    raw = yaml.safe_load((project / "params.yaml").read_text())
    methods = args.methods.split(",") if args.methods else list(raw["methods"])
    rows = args.rows.split(",")
    unknown = [row for row in rows if row not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    found: dict[str, dict[str, dict[str, Any]]] = {row: {} for row in rows}
    start, home = time.perf_counter(), Path.cwd()
    for row in rows:
        variant = edited(raw, ROWS[row])
        with tempfile.TemporaryDirectory() as folder:
            scratch(project, Path(folder), variant)
            os.chdir(folder)
            try:
                for method in methods:
                    found[row][method] = fit(variant, method, args.seed)
                    print(f"[{time.perf_counter() - start:6.0f} s] {row:22s} {method:12s} "
                          f"{found[row][method]}", file=sys.stderr, flush=True)
            finally:
                os.chdir(home)
    print(f"seed {args.seed}; cells: paper cascade - base / gated - base, points of test "
          f"accuracy (filters the gate kept); base: {raw['dlsa']['base_kinds'][0]}")
    print(table(found, methods))
    if args.json is not None:
        args.json.write_text(json.dumps(found, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
