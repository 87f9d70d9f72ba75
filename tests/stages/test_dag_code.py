"""dvc.yaml says what each stage's code really uses: every stage is run on tiny params in a
fresh fork of a warm server (tailbank's own modules imported afresh), and what it imported
(``sys.modules``) and the params keys it read (traced) must match its dvc.yaml block.
Machine-only keys (roots, workers, devices, the memory budget) change no result, so they are
no stage's params."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages import dag
from stages.machine import MACHINE_KEYS
from tests.stages import warm_servers
from tests.stages.conftest import tiny_params

METHODS = ("ce", "paco", "gml_teacher", "gml_student")  # a plain, a multi-view, a teacher pair
SEED = 0


def undeclared_reads(read: list[str], declared: list[str],
                     leaves: list[str] = ()) -> list[str]:
    """Keys a stage read that its declared params do not cover (machine keys aside). A whole
    section read (``model_dump``, e.g. for a digest) reads each of its ``leaves``."""
    return [key for key in _leaves_of(read, leaves) if not _machine(key)
            and not any(_within(key, owner) for owner in declared)]


def _leaves_of(read: list[str], leaves: list[str]) -> list[str]:
    keys: list[str] = []
    for key in read:
        under = [leaf for leaf in leaves if leaf != key and _within(leaf, key)]
        keys.extend(under or [key])
    return keys


def unread_declarations(read: list[str], declared: list[str]) -> list[str]:
    """Declared params of which the stage read nothing (they would re-run it for nothing)."""
    return [owner for owner in declared
            if not any(_within(key, owner) or _within(owner, key) for key in read)]


def unread_leaves(read: list[str], declared: list[str], leaves: list[str]) -> list[str]:
    """Keys under a declared section that the stage never read (machine keys aside): a change
    to one of them would re-run the stage for nothing."""
    return [leaf for leaf in leaves if not _machine(leaf)
            and any(_within(leaf, owner) for owner in declared)
            and not any(_within(leaf, key) for key in read)]


def undeclared_modules(modules: list[str], deps: list[str]) -> list[str]:
    """Imported files that no dependency of the block (a file or a folder) covers."""
    return [file for file in modules if not any(_within(file, dep, "/") for dep in deps)]


def _within(key: str, owner: str, separator: str = ".") -> bool:
    return key == owner or key.startswith(owner + separator)


def _machine(key: str) -> bool:
    return any(_within(key, machine) for machine in MACHINE_KEYS)


def test_the_comparisons_catch_a_missing_file_and_a_missing_key() -> None:
    deps = ["features/report.py", "pipeline/data"]
    assert undeclared_modules(["features/report.py", "features/report_plots.py",
                               "pipeline/data/splits.py"], deps) == ["features/report_plots.py"]
    assert undeclared_reads(["eval.many_above", "data.root", "classify.lr"],
                            ["eval"]) == ["classify.lr"]
    # a whole section read is a read of its leaves, machine keys aside
    leaves = ["data.dataset", "data.root", "data.split_seed"]
    assert undeclared_reads(["data"], ["data.dataset", "data.split_seed"], leaves) == []
    assert undeclared_reads(["data"], ["data.dataset"], leaves) == ["data.split_seed"]
    assert unread_declarations(["eval"], ["eval", "dlsa.flow"]) == ["dlsa.flow"]
    assert unread_declarations(["dlsa.flow.lr"], ["dlsa"]) == []


def _trace(project: Path, stage: str, *args: str) -> dict[str, Any]:
    out = project / f"trace-{stage}-{'-'.join(args)}.json"
    code, stderr = warm_servers.run_to_end("tests.stages.stage_trace:command", str(out), stage,
                                           *args, cwd=project)
    assert code == 0, stderr[-3000:]
    return json.loads(out.read_text())


def _project(tmp_path: Path, methods: tuple[str, ...]) -> dict[str, Any]:
    params = tiny_params()
    params["methods"] = {name: params["methods"][name] for name in methods}
    params["train"].update(epochs=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return dag.stage_blocks(params["methods"])


def _block(stages: dict[str, Any], name: str) -> dict[str, Any]:
    entry = stages[name]
    return entry.get("do", entry)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict, dict]]:
    """Each stage run once, in DAG order: its trace and its dvc.yaml block, by stage name."""
    project = tmp_path_factory.mktemp("dag_code")
    trace = functools.partial(_trace, project)
    stages = _project(project, METHODS)
    runs: dict[str, tuple[dict, dict]] = {"prepare": (trace("prepare"), _block(stages, "prepare"))}
    for method in METHODS:
        for stage in ("pretrain", "dump"):
            name = dag.stage_name(stage, method)
            runs[name] = (trace(stage, method, str(SEED)), _block(stages, name))
    for stage in ("classify", "dlsa", "analyze"):
        name = dag.stage_name(stage, "ce")
        runs[name] = (trace(stage, "ce", str(SEED)), _block(stages, name))
    stages = _project(project, ("ce",))  # the report of the one method scored downstream
    runs["report"] = (trace("report"), _block(stages, "report"))
    return runs


@pytest.mark.slow
def test_each_stage_imports_only_what_dvc_yaml_lists(traced) -> None:
    missing = {name: undeclared_modules(trace["modules"], block["deps"])
               for name, (trace, block) in traced.items()}
    assert not any(missing.values()), "imported, not in deps: " + json.dumps(missing, indent=1)


@pytest.mark.slow
def test_each_stage_reads_exactly_the_params_dvc_yaml_lists(traced) -> None:
    problems = {}
    for name, (trace, block) in traced.items():
        extra = undeclared_reads(trace["params"], block.get("params", []), trace["leaves"])
        unused = unread_declarations(trace["params"], block.get("params", []))
        unused += unread_leaves(trace["params"], block.get("params", []), trace["leaves"])
        if extra or unused:
            problems[name] = {"read, not declared": extra, "declared, not read": unused}
    assert not problems, json.dumps(problems, indent=1)
