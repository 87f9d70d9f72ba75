"""SIGKILL in the middle of a stage: nothing half-written appears, and the rerun resumes.

Each test starts the real command in a subprocess, waits until the run is provably in the
middle (a per-epoch checkpoint or the bank's temporary file exists), kills it with SIGKILL,
runs the command again and compares the outputs byte for byte with an uninterrupted run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from features.bank import Bank
from tests.stages import warm_servers
from tests.stages.conftest import tiny_params
from tests.stages.test_dlsa_stage import write_bank

pytestmark = pytest.mark.slow


def tailbank(project: Path, *args: str) -> None:
    """Run a command to its end, warm (`warm_servers`); the killed ones start cold, so that
    SIGKILL hits the very process that writes."""
    code, stderr = warm_servers.run_to_end("stages.cli:app", *args, cwd=project)
    assert code == 0, stderr


def kill_when(project: Path, ready: Callable[[], bool], *args: str, delay: float = 0.3) -> None:
    """Start ``tailbank args``, SIGKILL it ``delay`` s after ``ready()`` holds; it must not end
    first."""
    process = subprocess.Popen([sys.executable, "-m", "stages.cli", *args], cwd=project,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ready():
            assert process.poll() is None, f"{args} finished before it could be interrupted"
            assert time.monotonic() < deadline, f"{args} never reached the kill point"
            time.sleep(0.01)
        time.sleep(delay)
        assert process.poll() is None, f"{args} finished before it could be interrupted"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny params (four epochs, so a kill lands mid-run) with splits and a trained teacher."""
    root = tmp_path_factory.mktemp("kill")
    params = tiny_params()
    params["train"].update(epochs=4, batch_size=32, device="cpu")
    params["dump"].update(batch_size=1, device="cpu")
    params["dlsa"].update(device="cpu", num_filters=2, base_kinds=["balanced_softmax"])
    params["dlsa"]["flow"].update(epochs=40, batch_size=32, num_clusters=4)
    params["dlsa"]["classifier"].update(epochs=3)
    params["methods"]["gml_teacher"]["train"] = {"epochs": 1}
    params["methods"]["ce"]["train"] = {"epochs": 1}  # the dump test needs only a model
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    # the dumps that must finish read batches of 512; those to be killed read one image at
    # a time (params.yaml), so the kill lands mid-write
    params["dump"].update(batch_size=512)
    (root / "params_fast_dump.yaml").write_text(yaml.safe_dump(params))
    tailbank(root, "prepare")
    tailbank(root, "pretrain", "--method", "gml_teacher")
    return root


@pytest.mark.parametrize("method", ["paco", "gml_student"])
def test_killed_pretrain_resumes_to_the_uninterrupted_result(project: Path, method: str) -> None:
    model = project / "models" / method / "seed0" / "model.pt"
    checkpoint = project / "checkpoints" / "pretrain" / method / "seed0.pt"
    tailbank(project, "pretrain", "--method", method)
    uninterrupted = model.read_bytes()
    metrics = (project / "results/pretrain" / method / "seed0/metrics.json").read_bytes()
    model.unlink()

    kill_when(project, checkpoint.exists, "pretrain", "--method", method, delay=0.2)
    assert not model.exists(), "a killed run left a model behind"
    assert checkpoint.exists(), "the checkpoint of the unfinished run is gone"
    tailbank(project, "pretrain", "--method", method)

    assert model.read_bytes() == uninterrupted
    assert (project / "results/pretrain" / method / "seed0/metrics.json").read_bytes() == metrics
    assert not checkpoint.exists(), "a finished stage keeps no resume checkpoint"


def test_killed_dump_leaves_the_old_bank_or_none(project: Path) -> None:
    tailbank(project, "pretrain", "--method", "ce")
    bank = project / "banks" / "ce" / "seed0.h5"

    def writing() -> bool:
        return any(bank.parent.glob(".seed0.h5.*.tmp"))

    kill_when(project, writing, "dump", "--method", "ce")
    assert not bank.exists(), "a killed first dump left a bank behind"
    tailbank(project, "dump", "--method", "ce", "--params", "params_fast_dump.yaml")
    complete = bank.read_bytes()

    kill_when(project, writing, "dump", "--method", "ce")
    assert bank.read_bytes() == complete, "a killed dump touched the existing bank"
    with Bank.open(bank) as opened:
        assert opened.size("test") > 0
    tailbank(project, "dump", "--method", "ce", "--params", "params_fast_dump.yaml")
    assert bank.read_bytes() == complete
    assert not list(bank.parent.glob(".seed0.h5.*.tmp")), "stale temporaries were not cleaned up"


def test_killed_dlsa_resumes_to_the_uninterrupted_cascade(project: Path) -> None:
    (project / "banks").mkdir(exist_ok=True)
    write_bank(project / "banks" / "bsce" / "seed0.h5")
    cascade = project / "models/dlsa/bsce/seed0/model.pt"
    tailbank(project, "dlsa", "--method", "bsce")
    uninterrupted = cascade.read_bytes()
    metrics = (project / "results/dlsa/bsce/seed0/metrics.json").read_bytes()
    shutil.rmtree(project / "models/dlsa/bsce/seed0")

    second_filter = project / "checkpoints/dlsa/bsce/seed0/filter1.pt"
    kill_when(project, second_filter.exists, "dlsa", "--method", "bsce", delay=0.1)
    assert not cascade.exists()
    tailbank(project, "dlsa", "--method", "bsce")

    assert cascade.read_bytes() == uninterrupted
    assert (project / "results/dlsa/bsce/seed0/metrics.json").read_bytes() == metrics
    assert not (project / "checkpoints/dlsa/bsce/seed0").exists()
