"""Every bad input a user can give tailbank, each answered by one line and a non-zero exit.

The table below is the contract: a case names what the user did wrong, sets it up in a fresh
project, runs one command, and lists what the single line on stderr must contain (the key or
file at fault, and the fix). No traceback appears unless ``--debug`` is given.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from stages.cli import app
from tests.stages.conftest import tiny_params
from tests.stages.test_dlsa_stage import write_bank

Setup = Callable[[Path, dict], list[str]]


@dataclass(frozen=True)
class BadInput:
    """One row of the table: what is wrong, how to set it up, what the line must say."""

    name: str
    setup: Setup
    fragments: tuple[str, ...]


def edit(path: str, value: object, command: tuple[str, ...] = ("check",)) -> Setup:
    """A params edit at a dotted path (``a.b.c``); ``None`` as value deletes nothing."""

    def setup(project: Path, params: dict) -> list[str]:
        *parents, leaf = path.split(".")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
        return list(command)

    return setup


def rename(section: str, old: str, new: str) -> Setup:
    def setup(project: Path, params: dict) -> list[str]:
        node = params if not section else params[section]
        node[new] = node.pop(old)
        return ["check"]

    return setup


def with_bank(prepare: Callable[[Path], None], command: list[str]) -> Setup:
    def setup(project: Path, params: dict) -> list[str]:
        (project / "banks").mkdir(exist_ok=True)
        prepare(project / "banks" / "ce.h5")
        return command

    return setup


def both(first: Setup, second: Setup) -> Setup:
    """Run two setups; the command is the second's."""

    def setup(project: Path, params: dict) -> list[str]:
        first(project, params)
        return second(project, params)

    return setup


def nan_bank(path: Path) -> None:
    write_bank(path)
    with h5py.File(path, "r+") as handle:
        handle["train/features"][3, 1] = np.nan


def truncated_bank(path: Path) -> None:
    write_bank(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def foreign_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as handle:
        handle["x"] = np.zeros(3)


def with_cascade(bank: Callable[[Path], None], command: list[str]) -> Setup:
    """A fitted cascade (copied from the module's one) and a bank made by ``bank``."""

    def setup(project: Path, params: dict) -> list[str]:
        shutil.copytree(CASCADE_DIR[0], project / "models/dlsa/ce")
        (project / "banks").mkdir(exist_ok=True)
        bank(project / "banks" / "other.h5")
        return command

    return setup


def teacher_of_other_backbone(project: Path, params: dict) -> list[str]:
    """A gml_teacher checkpoint whose weights are a ResNet-32's while it claims ResNet-20."""
    from pipeline.methods import build_method
    from stages.params import parse_params
    from stages.prepare import run as prepare

    prepare(parse_params(params, "params.yaml"))
    counts = yaml.safe_load((project / "data/splits/digits_lt.json").read_text())
    counts = counts["class_counts"]
    wrong = build_method("gml_teacher", backbone="resnet32", in_channels=1, class_counts=counts)
    payload = {"format": "tailbank-model/1", "method": "gml_teacher", "kind": "gml_teacher",
               "backbone": "resnet20", "in_channels": 1, "dataset": "digits_lt",
               "class_counts": counts, "options": {}, "seed": 0, "best_epoch": 0,
               "params_digest": "", "state_dict": wrong.state_dict()}
    (project / "models/gml_teacher").mkdir(parents=True)
    torch.save(payload, project / "models/gml_teacher/model.pt")
    return ["pretrain", "--method", "gml_student"]


def _prepare(params: dict) -> None:
    from stages.params import parse_params
    from stages.prepare import run as prepare

    prepare(parse_params(params, "params.yaml"))


def missing_images_in_split_list(project: Path, params: dict) -> list[str]:
    from tests.pipeline.data.standins import write_list_standin

    lists = {pool: f"ImageNet_LT_{pool}.txt" for pool in ("train", "val", "test")}
    write_list_standin(project / "imagenet", lists, per_pool=10)
    listed = project / "imagenet" / lists["train"]
    first = listed.read_text().splitlines()[0].split()[0]
    (project / "imagenet" / first).unlink()
    params["data"].update(dataset="imagenet_lt", root=str(project / "imagenet"))
    return ["prepare"]


def empty_class(project: Path, params: dict) -> list[str]:
    params["data"].update(imbalance_factor=1000.0, max_per_class=20)
    return ["prepare"]


def file_params(text: str, command: tuple[str, ...] = ("check",)) -> Setup:
    def setup(project: Path, params: dict) -> list[str]:
        params.clear()
        (project / "params.yaml").write_text(text)
        return list(command)

    return setup


def no_params(project: Path, params: dict) -> list[str]:
    params.clear()
    return ["check", "--params", "elsewhere.yaml"]


TABLE = [
    BadInput("unknown key", rename("train", "epochs", "epoch"),
             ("train.epoch", "did you mean 'train.epochs'")),
    BadInput("misspelled section", rename("", "classify", "clasify"),
             ("clasify", "did you mean 'classify'")),
    BadInput("wrong type", edit("train.epochs", "ten"), ("train.epochs", "ten")),
    BadInput("negative epochs", edit("train.epochs", -3), ("train.epochs", "greater than or equal to 1")),
    BadInput("imbalance factor below 1", edit("data.imbalance_factor", 0.5),
             ("data.imbalance_factor", "0.5")),
    BadInput("routed share of 1.5", edit("dlsa.routed_share", 1.5), ("dlsa.routed_share", "less than 1")),
    BadInput("routed share of 0", edit("dlsa.routed_share", 0.0), ("dlsa.routed_share", "greater than 0")),
    BadInput("memory budget of 0", edit("memory.budget_mb", 0), ("memory.budget_mb", "greater than 0")),
    BadInput("infinite memory budget", edit("memory.budget_mb", float("inf")),
             ("memory.budget_mb", "finite number")),
    BadInput("k larger than the bank",
             both(with_bank(write_bank, []), edit("analyze.k", 100_000, ("analyze", "--method", "ce"))),
             ("analyze.k is 100000", "at most")),
    BadInput("unknown method on the command line", lambda p, params: ["pretrain", "--method", "bcse"],
             ("bcse", "bsce")),
    BadInput("unknown method kind", edit("methods.ce.kind", "paco2"), ("methods.ce.kind", "paco")),
    BadInput("unknown dataset", edit("data.dataset", "imagenet"), ("data.dataset", "imagenet_lt")),
    BadInput("unknown classifier", edit("classify.kinds", ["linear", "linar"]),
             ("classify.kinds", "linar")),
    BadInput("unknown DLSA base classifier", edit("dlsa.base_kinds", ["cosin"]),
             ("dlsa.base_kinds", "cosine")),
    BadInput("unknown method option", edit("methods.paco.options.alpah", 0.1),
             ("methods.paco.options.alpah", "alpha")),
    BadInput("unknown flow selection", edit("dlsa.flow.selection", "best"),
             ("dlsa.flow.selection", "purity")),
    BadInput("missing data root", lambda p, params: (
        params["data"].update(dataset="mnist_lt", root=str(p / "nowhere")) or ["prepare"]),
        ("nowhere", "download")),
    BadInput("split list naming a missing image", missing_images_in_split_list,
             ("ImageNet_LT_train.txt",)),
    BadInput("empty class after long-tail subsampling", empty_class, ("imbalance_factor",)),
    BadInput("bank with NaN features", with_bank(nan_bank, ["classify", "--method", "ce"]),
             ("banks/ce.h5", "NaN")),
    BadInput("truncated bank", with_bank(truncated_bank, ["classify", "--method", "ce"]),
             ("banks/ce.h5", "re-dump")),
    BadInput("foreign HDF5 file as bank", with_bank(foreign_hdf5, ["dlsa", "--method", "ce"]),
             ("banks/ce.h5",)),
    BadInput("missing bank", lambda p, params: ["analyze", "--method", "ce"],
             ("banks/ce.h5", "tailbank dump --method ce")),
    BadInput("bank with another feature width than the cascade",
             with_cascade(lambda path: write_bank(path, dim=12),
                          ["route", "--model", "models/dlsa/ce", "--bank", "banks/other.h5"]),
             ("banks/other.h5", "12 features", "refit the cascade")),
    BadInput("bank with another class count than the cascade",
             with_cascade(lambda path: write_bank(path, num_classes=4),
                          ["route", "--model", "models/dlsa/ce", "--bank", "banks/other.h5"]),
             ("banks/other.h5", "4 classes", "refit the cascade")),
    BadInput("foreign cascade file", lambda p, params: (
        (p / "models/dlsa/ce").mkdir(parents=True), (p / "models/dlsa/ce/cascade.pt").write_text("x"),
        ["route", "--model", "models/dlsa/ce", "--bank", "banks/ce.h5"])[-1],
        ("models/dlsa/ce/cascade.pt", "dlsa")),
    BadInput("teacher checkpoint of the wrong architecture", teacher_of_other_backbone,
             ("models/gml_teacher/model.pt", "do not fit", "re-run its pretrain stage")),
    BadInput("missing teacher checkpoint", lambda p, params: (
        _prepare(params), ["pretrain", "--method", "gml_student"])[-1],
        ("models/gml_teacher/model.pt", "tailbank pretrain --method gml_teacher")),
    BadInput("missing splits", lambda p, params: ["pretrain", "--method", "ce"],
             ("data/splits/digits_lt.json", "tailbank prepare")),
    BadInput("global batch not divisible by the processes",
             edit("train.processes", 3, ("pretrain", "--method", "ce")),
             ("train.batch_size", "train.processes 3")),
    BadInput("CUDA asked for on a machine without it",
             edit("train.device", "cuda:0", ("pretrain", "--method", "ce")),
             ("device 'cuda:0'", "auto or cpu")),
    BadInput("params file missing", no_params, ("elsewhere.yaml", "--params")),
    BadInput("params file not YAML", file_params("train: [1, 2\nseed: 0\n"), ("not valid YAML", "line")),
    BadInput("params file not a mapping", file_params("- 1\n- 2\n"), ("expected a mapping",)),
]

CASCADE_DIR: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def fitted_cascade(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One small cascade on a synthetic bank, fitted once for the cases that route."""
    import os

    root = tmp_path_factory.mktemp("cascade")
    params = _small_params()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "banks").mkdir()
    write_bank(root / "banks" / "ce.h5")
    here = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, ["dlsa", "--method", "ce"])
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    CASCADE_DIR.append(root / "models/dlsa/ce")


def _small_params() -> dict:
    params = tiny_params()
    params["dlsa"].update(base_kinds=["balanced_softmax"], num_filters=2, device="cpu")
    params["dlsa"]["flow"].update(epochs=2, num_clusters=3, selection="likelihood")
    params["dlsa"]["classifier"].update(epochs=2)
    params["classify"].update(epochs=2)
    return params


def test_the_table_has_at_least_25_cases() -> None:
    assert len(TABLE) >= 25 and len({case.name for case in TABLE}) == len(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=[case.name for case in TABLE])
def test_bad_input_gets_one_line(case: BadInput, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = _small_params()
    command = case.setup(tmp_path, params)
    if params:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, command)
    message = result.stderr.strip()
    assert result.exit_code == 2, f"{case.name}: exit {result.exit_code}\n{result.output}"
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("tailbank: error: "), message
    for fragment in case.fragments:
        assert fragment in message, f"{case.name}: {fragment!r} not in {message!r}"


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = _small_params()
    params["train"]["epochs"] = -3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match="train.epochs"):
        CliRunner().invoke(app, ["check", "--debug"], catch_exceptions=False)
