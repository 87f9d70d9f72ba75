"""`tailbank pretrain` with `train.processes: 2` runs two gloo ranks under torchrun on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from stages.launch import torchrun_command
from tests.stages.conftest import tiny_params

pytestmark = pytest.mark.slow


def tailbank(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=project,
                          capture_output=True, text=True)


def _params(processes: int, batch_size: int) -> dict:
    params = tiny_params()
    params["methods"] = {"ce": params["methods"]["ce"]}
    params["train"].update(epochs=1, processes=processes, batch_size=batch_size, device="cpu")
    return params


def test_two_ranks_train_and_rank_zero_writes(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(2, 64)))
    assert tailbank(tmp_path, "prepare").returncode == 0
    done = tailbank(tmp_path, "pretrain", "--method", "ce")
    assert done.returncode == 0, done.stderr
    assert "2 data-parallel ranks, global batch 64" in done.stdout + done.stderr
    payload = torch.load(tmp_path / "models/ce/seed0/model.pt", weights_only=False)
    assert payload["method"] == "ce" and payload["state_dict"]
    assert (tmp_path / "results/pretrain/ce/seed0/metrics.json").is_file()
    assert not (tmp_path / "checkpoints/pretrain/ce/seed0.pt").exists()


def test_a_global_batch_the_ranks_cannot_share_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_params(2, 63)))
    done = tailbank(tmp_path, "pretrain", "--method", "ce")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tailbank: error: params.yaml: train.batch_size 63 of method 'ce' is not divisible by "
        "train.processes 2; make it a multiple (it is the global batch)"
    ]


def test_torchrun_command_runs_the_same_stage() -> None:
    command = torchrun_command(4, ["pretrain", "--method", "ce"])
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert command[-5:] == ["-m", "stages.cli", "pretrain", "--method", "ce"]
