"""End to end: `dvc repro` of the real dvc.yaml on tiny params, in a fresh git repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stages.conftest import REPO, tiny_params

# a whole `dvc repro` of eight methods (twice for the determinism test) outlasts the default
# per-test limit on a loaded 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

METHODS = tuple(tiny_params()["methods"])
SCALARS = ("overall", "many", "medium", "few", "mcc", "nmi", "ece")


def dvc(project: Path, *args: str) -> str:
    """Run a dvc command in the project; fail the test with its output when it fails."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the code and dvc.yaml with tiny params, after one full `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    for package in ("core", "pipeline", "features", "stages"):
        shutil.copytree(REPO / package, root / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")  # tests/stages/test_dag.py keeps it current
    shutil.copytree(REPO / "docs/dvc", root / "docs/dvc")  # the top-level plots' templates
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    output = dvc(root, "repro")
    assert ran_stages(output) == {"prepare", "report"} | branch(*METHODS)
    return root


PER_METHOD = ("pretrain", "dump", "classify", "dlsa", "analyze")


def branch(*methods: str, stages: tuple[str, ...] = PER_METHOD, seeds=(0,)) -> set[str]:
    """The per-method stages of ``methods`` (one per seed)."""
    return {f"{stage}-{method}@{seed}" for stage in stages for method in methods
            for seed in seeds}


def test_metrics_cover_every_method_and_classifier(project):
    """`dvc metrics show`: one small file per method (its classifier chosen on val, percent);
    every classifier kind's details sit in the per-seed results, out of `metrics:`."""
    shown = json.loads(dvc(project, "metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]
    assert sorted(metrics) == sorted(f"results/summary/{m}.json" for m in METHODS)
    for method in METHODS:
        row = metrics[f"results/summary/{method}.json"]["data"]
        assert set(row) == {"acc", "ci", "many", "med", "few", "dlsa"}
        assert 0.0 <= row["ci"]["lo"] <= row["acc"] <= row["ci"]["hi"] <= 100.0
        assert -100.0 <= row["dlsa"] <= 100.0
        table = json.loads((project / f"results/classify/{method}/seed0/metrics.json").read_text())
        kinds = tiny_params()["classify"]["kinds"]
        assert set(table) == set(kinds)
        for kind in kinds:
            assert set(SCALARS) <= set(table[kind])


def test_plots_show_renders_the_overlays(project):
    """The top-level plots find their tables (the templates are copied with the code)."""
    shown = json.loads(dvc(project, "plots", "show", "--json"))["data"]
    assert {"val_accuracy", "per_class_accuracy"} | {f"tsne_{m}" for m in METHODS} <= set(shown)
    for name in ("val_accuracy", "per_class_accuracy"):
        (plot,) = shown[name]
        values = plot["content"]["data"]["values"]
        assert {row["filename"].split("/")[0] for row in values} == set(METHODS)


def test_outputs_are_in_place(project):
    for method in METHODS:
        assert (project / "models" / method / "seed0" / "model.pt").is_file()
        assert (project / "banks" / method / "seed0.h5").is_file()
        assert not (project / "checkpoints" / "pretrain" / method / "seed0.pt").exists()
        curves = project / "results/pretrain" / method / "seed0/live/plots/metrics"
        assert (curves / "val_acc.tsv").is_file()
        assert (project / f"results/classify/{method}/seed0/predictions.npz").is_file()


def test_second_repro_runs_nothing(project):
    assert ran_stages(dvc(project, "repro")) == set()


def test_machine_keys_rerun_nothing(project):
    """Moving the data (unused by digits_lt), the loader's workers and the devices are where
    the work runs, not what it computes."""
    path = project / "params.yaml"
    original = path.read_text()
    params = yaml.safe_load(original)
    params["data"]["root"] = "/somewhere/else"
    params["train"].update(num_workers=2, device="cpu")
    for section in ("dump", "classify", "dlsa"):
        params[section]["device"] = "cpu"
    path.write_text(yaml.safe_dump(params))
    try:
        assert ran_stages(dvc(project, "repro")) == set()
    finally:
        path.write_text(original)


def _output_bytes(project: Path) -> dict[str, bytes]:
    """Every output file's bytes, by path; not the .gitignore files DVC puts beside the
    outputs it caches (its bookkeeping, which `tailbank run` leaves to DVC)."""
    folders = ("data/splits", "models", "banks", "results", "reports")
    return {str(path.relative_to(project)): path.read_bytes()
            for folder in folders for path in sorted((project / folder).rglob("*"))
            if path.is_file() and path.name != ".gitignore"}


def test_forced_rerun_from_scratch_gives_identical_bytes(project):
    """Determinism on CPU: every split, model, bank, cascade, metric and report, byte for byte,
    when the whole DAG runs again from scratch in one process (`tailbank run`: the same stage
    code, without the ~3 s of imports each of dvc's 42 commands pays, and with whatever state
    one stage leaves to the next, which a stage that forgets to seed would show)."""
    before = _output_bytes(project)
    for folder in ("data", "models", "banks", "results", "reports"):
        shutil.rmtree(project / folder)
    done = subprocess.run([sys.executable, "-m", "stages.cli", "run"], cwd=project,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(project)})
    assert done.returncode == 0, done.stderr[-3000:]
    after = _output_bytes(project)
    assert sorted(after) == sorted(before)
    changed = [name for name in before if after[name] != before[name]]
    assert not changed, f"outputs differ between two runs from scratch: {changed}"
    assert len(before) > 8 * 10
    assert ran_stages(dvc(project, "repro")) == set(), "dvc should find the same outputs"


def test_classifier_param_reruns_only_classify(project):
    """classify.kinds is read by classify alone (dlsa fits dlsa.base_kinds with classify's
    recipe: tests/stages/test_dag_code.py checks that dlsa declares and reads that recipe)."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["classify"]["kinds"] = params["classify"]["kinds"][:-1]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(dvc(project, "repro")) == branch(*METHODS, stages=("classify",)) | {
        "report"}


def test_method_param_reruns_only_its_branch(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["methods"]["cbs"]["train"] = {"epochs": 1}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(dvc(project, "repro")) == branch("cbs") | {"report"}


def test_teacher_change_reruns_its_student(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["methods"]["gml_teacher"]["train"] = {"epochs": 1}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran_stages(dvc(project, "repro")) == branch("gml_teacher", "gml_student") | {"report"}
