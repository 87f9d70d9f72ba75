"""SIGTERM or SIGKILL after any file operation of a stage's writing phase leaves each output
folder holding its old set or its new set, byte for byte, and no temporary file behind."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.stages.conftest import tiny_params
from tests.stages.interrupts import SIGNALS, interrupt_every_write, tree
from tests.stages.test_dlsa_stage import write_bank

STAGES = {
    "classify": [Path("results/classify/ce/seed0")],
    "dlsa": [Path("models/dlsa/ce/seed0"), Path("results/dlsa/ce/seed0")],
    "analyze": [Path("results/analyze/ce/seed0")],
}


def small_params(variant: int) -> dict:
    """Tiny params; variants 0 and 1 give every stage other outputs (old set, new set)."""
    params = tiny_params()
    params["methods"] = {"ce": params["methods"]["ce"]}
    params["classify"].update(kinds=["head", "linear", "balanced_softmax"], epochs=2,
                              lr=(0.1, 0.05)[variant])
    params["dlsa"].update(base_kinds=["balanced_softmax"], num_filters=2, device="cpu")
    params["dlsa"]["flow"].update(epochs=2, num_clusters=3, selection="likelihood",
                                  lr=(0.2, 0.1)[variant])
    params["dlsa"]["classifier"].update(epochs=2)
    params["analyze"].update(k=(5, 4)[variant], tsne_samples=30, kmeans_niter=2)
    return params


@pytest.mark.parametrize("signal_name", sorted(SIGNALS))
@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_killed_stage_leaves_the_old_set_or_the_new_set(
    stage: str, signal_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    (project / "banks").mkdir()
    write_bank(project / "banks/ce/seed0.h5")
    (project / "params.yaml").write_text(yaml.safe_dump(small_params(variant=0)))
    done = CliRunner().invoke(app, [stage, "--method", "ce"])
    assert done.exit_code == 0, done.output
    folders = STAGES[stage]
    old = {str(folder): tree(project / folder) for folder in folders}
    (project / "params.yaml").write_text(yaml.safe_dump(small_params(variant=1)))

    records = interrupt_every_write(project, [stage, "--method", "ce"], folders,
                                    SIGNALS[signal_name], tmp_path / "records.json")

    *killed, finished = records
    new = finished["outputs"]
    assert not finished["signalled"] and finished["exit"] == 0
    assert new != old and len(killed) >= 10, f"{len(killed)} writes"
    for record in killed:
        where = f"{stage}, {signal_name} after write {record['k']}"
        for folder in map(str, folders):
            assert record["outputs"][folder] in (old[folder], new[folder]), where
        if signal_name == "SIGTERM":  # the stage cleans up after itself
            assert record["exit"] in (0, 130), where
            assert record["left"] == [".lock"], f"{where}: {record['left']} left behind"
        # after SIGKILL the next tailbank command finishes or drops what the run staged
        assert record["settled"] in (old, new), where
        assert record["staging"] == [".lock"], f"{where}: {record['staging']} left behind"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(("stage", "again"), [("classify", "redo it"), ("dlsa", "resume")])
def test_sigterm_and_ctrl_c_get_the_same_line(
    stage: str, again: str, signum: int, tmp_path: Path
) -> None:
    """The signal arrives while the stage trains; the line says whether a re-run resumes."""
    (tmp_path / "banks").mkdir()
    write_bank(tmp_path / "banks/ce/seed0.h5")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(small_params(variant=0)))
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(read)
            os.chdir(tmp_path)
            sys.stderr = os.fdopen(write, "w", buffering=1)
            from features import classifiers

            fit = classifiers.fit_classifier

            def interrupted_fit(*args, **kwargs):
                os.kill(os.getpid(), signum)
                return fit(*args, **kwargs)

            classifiers.fit_classifier = interrupted_fit
            import features.bank.splits
            import features.dlsa.fit

            features.bank.splits.fit_classifier = interrupted_fit
            features.dlsa.fit.fit_classifier = interrupted_fit
            result = app([stage, "--method", "ce"], standalone_mode=False)
            code = result if isinstance(result, int) else 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as stream:
        lines = stream.read().splitlines()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 130
    assert lines[-1] == ("tailbank: interrupted; its outputs are the old set or the new one, "
                         f"never a mix; run the same command again to {again}"), lines
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.json"))
