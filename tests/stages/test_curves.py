"""Pretrain's training curves: the files DVCLive's `Live` writes, without starting `Live`."""

from __future__ import annotations

import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from pipeline.engine import EpochRecord
from stages.pretrain import CurveLogger
from tests.stages.interrupts import tree

RECORDS = [EpochRecord(0, 2.5, 0.25, 0.125, 0.1), EpochRecord(1, 1.25, 0.5, 0.375, 0.05),
           EpochRecord(2, 0.75, 0.625, 0.5, 0.0)]


def test_curves_are_the_bytes_dvclive_writes(tmp_path: Path, monkeypatch) -> None:
    from dvclive import Live

    monkeypatch.chdir(tmp_path)  # outside any git / DVC repository, where Live starts cleanly
    live = Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False, report=None)
    for record in RECORDS:
        live.step = record.epoch + 1  # the 1-based epoch, as the logs and the report count
        for name, value in asdict(record).items():
            if name != "epoch":
                live.log_metric(name, float(value))
        live.next_step()
    live.end()
    with CurveLogger(tmp_path / "ours") as curves:
        for record in RECORDS:
            curves.log(record)
    expected = tree(tmp_path / "live")
    assert set(expected) == {"metrics.json", "plots/metrics/lr.tsv", "plots/metrics/train_acc.tsv",
                             "plots/metrics/train_loss.tsv", "plots/metrics/val_acc.tsv"}
    assert tree(tmp_path / "ours") == expected


def test_curves_leave_a_fresh_git_repository_alone(tmp_path: Path, monkeypatch) -> None:
    """`Live` fails in a git repository with no commit and runs `dvc init` in one without DVC."""
    if subprocess.run(["git", "init", "-q", str(tmp_path)], check=False).returncode != 0:
        pytest.skip("git is not installed")
    monkeypatch.chdir(tmp_path)
    with CurveLogger(tmp_path / "live") as curves:
        curves.log(RECORDS[0])
    assert not (tmp_path / ".dvc").exists()
    assert (tmp_path / "live" / "plots" / "metrics" / "val_acc.tsv").read_text().splitlines() == \
        ["step\tval_acc", "1\t0.125"]


def test_an_earlier_runs_curves_are_replaced(tmp_path: Path) -> None:
    for _ in range(2):
        with CurveLogger(tmp_path / "live") as curves:
            curves.log(RECORDS[0])
    rows = (tmp_path / "live" / "plots" / "metrics" / "lr.tsv").read_text().splitlines()
    assert rows == ["step\tlr", "1\t0.1"]


def test_pretrain_ends_with_one_saved_line(tmp_path: Path, monkeypatch) -> None:
    import json

    import yaml
    from typer.testing import CliRunner

    from stages.cli import app
    from tests.stages.conftest import tiny_params

    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["train"].update(epochs=1, device="cpu")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert CliRunner().invoke(app, ["prepare"]).exit_code == 0
    done = CliRunner().invoke(app, ["pretrain", "--method", "ce"])
    assert done.exit_code == 0, done.stderr
    metrics = json.loads((tmp_path / "results/pretrain/ce/seed0/metrics.json").read_text())
    assert done.stderr.strip().splitlines()[-1] == (
        f"saved models/ce/seed0/model.pt (best epoch {metrics['best_epoch']}, "
        f"val acc {metrics['best_val_acc']:.4f})")
