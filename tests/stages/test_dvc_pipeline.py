"""End to end: `dvc repro` of the real dvc.yaml on tiny params, in a fresh git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stages.conftest import tiny_params
from tests.stages.dvc_projects import (
    ON_SMALL_PROJECT,
    SMALL_METHODS,
    branch,
    dvc,
    edit_params,
    new_project,
    ran_stages,
)

# a whole `dvc repro` of eight methods (twice for the determinism test) outlasts the default
# per-test limit on a loaded 2-core machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

METHODS = tuple(tiny_params()["methods"])
SCALARS = ("overall", "many", "medium", "few", "mcc", "nmi", "ece")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the code and the repository's DAG (all eight methods; test_dag.py checks that
    the committed files are what `tailbank dag` writes) with tiny params, after one full
    `dvc repro`."""
    root = new_project(tmp_path_factory.mktemp("project"), tiny_params())
    output = dvc(root, "repro")
    assert ran_stages(output) == {"prepare", "report"} | branch(*METHODS)
    return root


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


# The rerun tests look at which blocks re-run, which is a property of each branch: they share
# the three-method project of test_dag.py's seed test (tests/stages/conftest.py), which an
# xdist worker builds beside the eight-method one above.


@ON_SMALL_PROJECT
def test_classifier_param_reruns_only_classify(small_project):
    """classify.kinds is read by classify alone (dlsa fits dlsa.base_kinds with classify's
    recipe: tests/stages/test_dag_code.py checks that dlsa declares and reads that recipe)."""
    edit_params(small_project, lambda p: p["classify"].update(kinds=p["classify"]["kinds"][:-1]))
    assert ran_stages(dvc(small_project, "repro")) == branch(
        *SMALL_METHODS, stages=("classify",)) | {"report"}


@ON_SMALL_PROJECT
def test_method_param_reruns_only_its_branch(small_project):
    edit_params(small_project, lambda p: p["methods"]["ce"].update(train={"epochs": 2}))
    assert ran_stages(dvc(small_project, "repro")) == branch("ce") | {"report"}


@ON_SMALL_PROJECT
def test_teacher_change_reruns_its_student(small_project):
    edit_params(small_project, lambda p: p["methods"]["gml_teacher"].update(
        train={"epochs": 2}))
    assert ran_stages(dvc(small_project, "repro")) == branch("gml_teacher", "gml_student") | {
        "report"}
