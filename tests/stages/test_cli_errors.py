"""Bad input through the CLI: a non-zero exit and one line naming the key or file and a fix."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from stages.cli import app
from tests.stages.conftest import tiny_params


@pytest.fixture
def in_project(tmp_path, monkeypatch, write_params):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stderr.strip()


def assert_one_line(code: int, message: str, *fragments: str) -> None:
    assert code == 2, message
    assert message.count("\n") == 0, message
    assert message.startswith("tailbank: error: ")
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_dataset_root_says_how_to_get_it(in_project, write_params):
    params = tiny_params()
    params["data"].update(dataset="mnist_lt", root=str(in_project / "nowhere"))
    write_params(params, in_project / "params.yaml")
    code, message = invoke("prepare")
    assert_one_line(code, message, "nowhere", "download")


def test_unknown_method(in_project, write_params):
    write_params(tiny_params(), in_project / "params.yaml")
    code, message = invoke("pretrain", "--method", "bcse")
    assert_one_line(code, message, "bcse", "bsce")


def test_unknown_dataset(in_project, write_params):
    params = tiny_params()
    params["data"]["dataset"] = "imagenet"
    write_params(params, in_project / "params.yaml")
    code, message = invoke("prepare")
    assert_one_line(code, message, "data.dataset", "imagenet_lt")


def test_misspelled_key(in_project, write_params):
    params = tiny_params()
    params["train"]["epoch"] = params["train"].pop("epochs")
    write_params(params, in_project / "params.yaml")
    code, message = invoke("check")
    assert_one_line(code, message, "train.epoch", "did you mean 'train.epochs'")


def test_missing_bank(in_project, write_params):
    write_params(tiny_params(), in_project / "params.yaml")
    code, message = invoke("classify", "--method", "ce")
    assert_one_line(code, message, "banks/ce/seed0.h5", "tailbank dump --method ce")


@pytest.mark.parametrize("content", ["text", "hdf5"])
def test_foreign_bank(in_project, write_params, content):
    write_params(tiny_params(), in_project / "params.yaml")
    bank = in_project / "banks" / "ce" / "seed0.h5"
    bank.parent.mkdir(parents=True)
    if content == "text":
        bank.write_text("not a bank")
    else:
        with h5py.File(bank, "w") as handle:
            handle["x"] = np.zeros(3)
    code, message = invoke("classify", "--method", "ce")
    assert_one_line(code, message, "banks/ce/seed0.h5")


def test_debug_shows_the_traceback(in_project, write_params):
    write_params(tiny_params(), in_project / "params.yaml")
    result = CliRunner().invoke(app, ["classify", "--method", "ce", "--debug"])
    assert result.exit_code != 0
    assert result.exception is not None


def test_help_explains_each_command():
    for command in ("prepare", "pretrain", "dump", "classify", "check"):
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0
        assert "params" in result.stdout.lower()
