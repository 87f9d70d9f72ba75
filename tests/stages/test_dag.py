"""dvc.yaml is generated from the stages' declarations (`stages.dag`) and kept current; the
seed axis runs each seed once and adds seeds without re-running the others."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from stages import code_deps, dag
from stages.cli import app
from stages.machine import MACHINE_KEYS
from stages.params import load_params
from tests.stages.conftest import REPO, tiny_params
from tests.stages.dvc_projects import ON_SMALL_PROJECT, branch, dvc, ran_stages


def test_the_committed_dvc_yaml_is_current() -> None:
    params = load_params(REPO / "params.yaml").model_dump(mode="json")
    assert dag.is_current(params, REPO), "dvc.yaml is out of date: run `tailbank dag`"
    assert sorted(str(path.relative_to(REPO)) for path in REPO.glob("pipelines/*/dvc.yaml")) == (
        sorted(f"pipelines/{name}/dvc.yaml" for name in params["methods"]))


def test_machine_keys_are_no_stage_params() -> None:
    """Where and on what the work runs re-runs nothing: no block tracks a machine-only key, or
    a whole section holding one; for the user's own images the folder is the data."""
    params = load_params(REPO / "params.yaml").model_dump(mode="json")
    stages = dag.stage_blocks(params["methods"], params["imports"], params["data"]["dataset"])

    def tracked(block: dict) -> list[str]:
        return block.get("do", block)["params"]

    def machine(key: str) -> bool:
        return any(key == m or key.startswith(m + ".") or m.startswith(key + ".")
                   for m in MACHINE_KEYS)

    assert [key for block in stages.values() for key in tracked(block) if machine(key)] == []
    assert "data.dataset" in tracked(stages["prepare"]) and "train.epochs" in tracked(
        stages["pretrain-ce"])
    own = dag.stage_blocks(params["methods"], dataset="image_folder")
    for name in ("prepare", "pretrain-ce", "dump-ce"):
        assert "data.root" in tracked(own[name])
        assert "data.download" not in tracked(own[name])


@pytest.mark.parametrize(
    "package", ["pipeline.data", "pipeline.engine", "pipeline.methods", "pipeline.models"])
def test_the_dag_reads_each_lazy_package_exports_from_its_source(package: str) -> None:
    exports = code_deps._lazy_exports(package)
    assert exports and importlib.import_module(package).__all__ == sorted(exports)


def test_each_branch_depends_on_its_own_method_code_and_its_teacher() -> None:
    methods = load_params(REPO / "params.yaml").model_dump(mode="json")["methods"]
    stages = dag.stage_blocks(methods)
    paco = stages["pretrain-paco"]["do"]["deps"]
    ce = stages["pretrain-ce"]["do"]["deps"]
    assert "pipeline/methods/paco.py" in paco and "pipeline/methods/paco_loss.py" in paco
    assert "pipeline/methods/paco.py" not in ce and "pipeline/methods/ce.py" in ce
    assert "pipeline/methods" not in ce  # not the whole package
    student = stages["pretrain-gml_student"]
    assert student["foreach"] == "${seeds}"
    assert "models/gml_teacher/seed${item}/model.pt" in student["do"]["deps"]
    assert student["do"]["cmd"] == "tailbank pretrain --method gml_student --seed ${item}"
    report_deps = stages["report"]["deps"]
    assert "stages/report.py" not in ce and "features/report" in report_deps
    # a report plot module changed re-runs the report (its package is a dependency)
    assert any(Path("features/report/plots.py").is_relative_to(dep) for dep in report_deps)
    assert [next(iter(entry)) for entry in stages["report"]["metrics"]] == [
        f"results/summary/{method}.json" for method in methods]


def test_check_says_when_dvc_yaml_is_out_of_date(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert CliRunner().invoke(app, ["dag"]).exit_code == 0
    assert CliRunner().invoke(app, ["check"]).exit_code == 0
    params["methods"]["ce2"] = {"kind": "ce"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = CliRunner().invoke(app, ["check"])
    assert done.exit_code == 2 and "dvc.yaml: out of date" in done.output
    assert CliRunner().invoke(app, ["dag"]).exit_code == 0
    assert "pretrain-ce2" in (tmp_path / "pipelines/ce2/dvc.yaml").read_text()
    del params["methods"]["ce2"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = CliRunner().invoke(app, ["check"])  # a pipeline of a method that is gone
    assert done.exit_code == 2 and "dvc.yaml: out of date" in done.output
    assert CliRunner().invoke(app, ["dag"]).exit_code == 0
    assert not (tmp_path / "pipelines/ce2").exists()
    assert CliRunner().invoke(app, ["check"]).exit_code == 0


def test_check_names_a_tracked_key_the_params_file_leaves_out(tmp_path: Path,
                                                              monkeypatch) -> None:
    """dvc.yaml lists each key a stage reads, and DVC refuses a stage whose key is absent
    (even one at its default): `check` says which before DVC does."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    del params["data"]["image_size"], params["dlsa"]["gate_alpha"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    done = CliRunner().invoke(app, ["check"])
    assert done.exit_code == 2
    assert "data.image_size, dlsa.gate_alpha missing; dvc.yaml tracks every key" in done.output


@pytest.mark.slow
@pytest.mark.timeout(1800)
@ON_SMALL_PROJECT
def test_a_second_seed_runs_only_its_own_stages(small_project: Path, tmp_path: Path) -> None:
    """A second seed of a GML teacher and of its student, which learns from the same seed's
    teacher: a copy of the shared project (tests/stages/conftest.py), its plain method left
    out, gets seed 1."""
    root = tmp_path / "project"
    shutil.copytree(small_project, root, symlinks=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["methods"] = {name: params["methods"][name] for name in ("gml_teacher", "gml_student")}
    methods = tuple(params["methods"])
    params["seeds"] = [0, 1]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert dag.write(params, root)  # the plain method's pipeline goes
    second = ran_stages(dvc(root, "repro"))
    assert second == branch(*methods, seeds=(1,)) | {"report"}
    summaries = {path.stem: json.loads(path.read_text())
                 for path in (root / "results/summary").glob("*.json")}
    assert set(summaries) == set(methods)
    assert all(summary["acc"] is not None for summary in summaries.values())
    for method in methods:
        assert (root / f"models/{method}/seed1/model.pt").is_file()
    teacher = json.loads((root / "results/pretrain/gml_student/seed1/metrics.json").read_text())
    assert teacher["epochs"] == 1
    done = subprocess.run(
        ["tailbank", "compare", "gml_teacher", "gml_student"], cwd=root, capture_output=True,
        text=True)
    assert done.returncode == 0, done.stderr
    assert "2 seed(s) (0, 1)" in done.stdout and "95% CI (seeds)" in done.stdout
    page = (root / "reports/summary.md").read_text()
    assert "2 training seeds (0, 1)" in page and "1 degree of freedom" in page


def test_libyaml_and_python_emitters_write_the_same_dvc_yaml(monkeypatch) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    fast = dag.render_files(params["methods"], params.get("imports"))
    monkeypatch.setattr(dag, "YAML_DUMPER", yaml.SafeDumper)
    assert dag.render_files(params["methods"], params.get("imports")) == fast
