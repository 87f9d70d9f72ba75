"""Every bad input a user can give tailbank, each answered by one line and a non-zero exit.

The table below is the contract: a case names what the user did wrong, sets it up in a fresh
project, runs one command, and lists what the single line on stderr must contain (the key or
file at fault, and the fix). No traceback appears unless ``--debug`` is given.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
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
    """One row of the table: what is wrong, how to set it up, what the line must say.

    ``category`` is the class of fault (see CATEGORIES); ``after`` checks what must not have
    happened (code run from a file, a write outside the project).
    """

    name: str
    setup: Setup
    fragments: tuple[str, ...]
    category: str = "schema"
    after: Callable[[Path], None] | None = None


CATEGORIES = {
    "schema": "a params key or value the schema refuses",
    "data": "data that cannot give the splits asked for",
    "upstream": "an upstream output that is missing",
    "bank": "a bank or model file that is damaged or foreign",
    "names": "a name that would become a path or command outside the project",
    "check": "a value `check` must refuse because a stage would later refuse or misuse it",
    "mismatch": "inputs that do not match each other",
    "writable": "an output that cannot be written, found before the work",
    "pickle": "a torch file crafted to run code when unpickled",
}


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
        (project / "banks" / "ce").mkdir(parents=True, exist_ok=True)
        prepare(project / "banks" / "ce" / "seed0.h5")
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
        shutil.copytree(CASCADE_DIR[0], project / "models/dlsa/ce/seed0")
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
    (project / "models/gml_teacher/seed0").mkdir(parents=True)
    torch.save(payload, project / "models/gml_teacher/seed0/model.pt")
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


def image_folder(counts: dict[str, int], **data: object) -> Setup:
    """An image_folder project with ``counts`` PNGs per class, and edits of ``data``."""

    def setup(project: Path, params: dict) -> list[str]:
        from tests.pipeline.data.standins import write_image_folder

        write_image_folder(project / "photos", counts)
        for name in counts:
            (project / "photos" / name).mkdir(parents=True, exist_ok=True)  # a count of 0
        params["data"].update({"dataset": "image_folder", "root": "photos", **data})
        return ["prepare"]

    return setup


def image_list_line(line: str) -> Setup:
    """An image_list project whose training list ends with ``line``."""

    def setup(project: Path, params: dict) -> list[str]:
        from tests.pipeline.data.standins import write_image_list

        write_image_list(project, "train.txt", [0, 1, 1])
        with (project / "train.txt").open("a") as handle:
            handle.write(line + "\n")
        params["data"].update(dataset="image_list", root=".", lists={"train": "train.txt"})
        return ["prepare"]

    return setup


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


class RunsCode:
    """Unpickling this calls os.mkdir(target): what a crafted torch file would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


EVIDENCE = "code-ran"


def crafted(relative: str, command: list[str], prepare: bool = False,
            bank: bool = False) -> Setup:
    """A torch file at ``relative`` whose unpickling would create the folder EVIDENCE."""

    def setup(project: Path, params: dict) -> list[str]:
        if prepare:
            _prepare(params)
        if bank:
            (project / "banks").mkdir(exist_ok=True)
            write_bank(project / "banks" / "ce" / "seed0.h5")
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"format": "x", "state_dict": RunsCode(project / EVIDENCE)}, target)
        return command

    return setup


def nothing_ran(project: Path) -> None:
    assert not (project / EVIDENCE).exists(), "unpickling ran code"


def outside_untouched(project: Path) -> None:
    outside = project.parent / "outside"
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in project.parent.iterdir()) == ["outside", "project"]


def method_key(key: str, command: tuple[str, ...] = ("check",)) -> Setup:
    def setup(project: Path, params: dict) -> list[str]:
        params["methods"][key] = params["methods"].pop("ce")
        return list(command)

    return setup


def edit_splits(change: Callable[[dict], None], command: list[str]) -> Setup:
    """Prepare the splits, then change the splits file."""

    def setup(project: Path, params: dict) -> list[str]:
        _prepare(params)
        path = project / "data/splits/digits_lt.json"
        splits = json.loads(path.read_text())
        change(splits)
        path.write_text(json.dumps(splits))
        return command

    return setup


def counts_disagree(path: Path) -> None:
    write_bank(path)
    with h5py.File(path, "r+") as handle:
        counts = handle["class_counts"][...]
        counts[0] += 1
        del handle["class_counts"]
        handle.create_dataset("class_counts", data=counts, chunks=(len(counts),),
                              fletcher32=True, track_times=False)


def blocking_file(relative: str, command: list[str], bank: bool = False) -> Setup:
    """A plain file where tailbank needs to write a folder (or the other way round)."""

    def setup(project: Path, params: dict) -> list[str]:
        if bank:
            (project / "banks").mkdir(exist_ok=True)
            write_bank(project / "banks" / "ce" / "seed0.h5")
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("in the way")
        return command

    return setup


def wrong_shape_results(project: Path, params: dict) -> list[str]:
    folder = project / "results/classify/ce/seed0"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("[1, 2, 3]")
    return ["report"]


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
             ("analyze.k is 100000", "at most"), category="upstream"),
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
        ("nowhere", "download"), category="data"),
    BadInput("split list naming a missing image", missing_images_in_split_list,
             ("ImageNet_LT_train.txt",), category="data"),
    BadInput("empty class after long-tail subsampling", empty_class, ("imbalance_factor",), category="data"),
    BadInput("image folder root missing", image_folder({}, root="nowhere"),
             ("data.root", "nowhere", "not found"), category="data"),
    BadInput("image folder with an empty class folder", image_folder({"ant": 5, "bee": 0}),
             ("bee", "holds no images"), category="data"),
    BadInput("image folder class too small for val",
             image_folder({"ant": 9, "bee": 3}, val_per_class=2, test_per_class=1),
             ("'bee'", "data.val_per_class", "data.folders.val"), category="data"),
    BadInput("image list label that is not an integer", image_list_line("images/0.png bee"),
             ("train.txt:4", "'bee' is not an integer"), category="data"),
    BadInput("image list naming a missing image", image_list_line("images/gone.png 1"),
             ("gone.png", "train.txt", "data.root"), category="data"),
    BadInput("image size for an in-memory dataset", edit("data.image_size", 32),
             ("data.image_size", "digits_lt", "remove the key")),
    BadInput("left-out val for a user dataset", edit("data.val_from", "left_out"),
             ("data.val_from", "left_out", "digits_lt")),
    # a value changed behind the writer's back fails its chunk's digest before anything is read
    BadInput("bank with NaN features", with_bank(nan_bank, ["classify", "--method", "ce"]),
             ("banks/ce/seed0.h5", "train/features", "re-run `tailbank dump`"), category="bank"),
    BadInput("truncated bank", with_bank(truncated_bank, ["classify", "--method", "ce"]),
             ("banks/ce/seed0.h5", "re-dump"), category="bank"),
    BadInput("foreign HDF5 file as bank", with_bank(foreign_hdf5, ["dlsa", "--method", "ce"]),
             ("banks/ce/seed0.h5",), category="bank"),
    BadInput("missing bank", lambda p, params: ["analyze", "--method", "ce"],
             ("banks/ce/seed0.h5", "tailbank dump --method ce"), category="upstream"),
    BadInput("bank with another feature width than the cascade",
             with_cascade(lambda path: write_bank(path, dim=12),
                          ["route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/other.h5"]),
             ("banks/other.h5", "12 features", "refit the cascade"), category="bank"),
    BadInput("bank with another class count than the cascade",
             with_cascade(lambda path: write_bank(path, num_classes=4),
                          ["route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/other.h5"]),
             ("banks/other.h5", "4 classes", "refit the cascade"), category="bank"),
    BadInput("foreign cascade file", lambda p, params: (
        (p / "models/dlsa/ce/seed0").mkdir(parents=True), (p / "models/dlsa/ce/seed0/model.pt").write_text("x"),
        ["route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/ce/seed0.h5"])[-1],
        ("models/dlsa/ce/seed0/model.pt", "dlsa"), category="bank"),
    BadInput("teacher checkpoint of the wrong architecture", teacher_of_other_backbone,
             ("models/gml_teacher/seed0/model.pt", "do not fit", "re-run its pretrain stage"), category="bank"),
    BadInput("missing teacher checkpoint", lambda p, params: (
        _prepare(params), ["pretrain", "--method", "gml_student"])[-1],
        ("models/gml_teacher/seed0/model.pt", "tailbank pretrain --method gml_teacher"), category="upstream"),
    BadInput("missing splits", lambda p, params: ["pretrain", "--method", "ce"],
             ("data/splits/digits_lt.json", "tailbank prepare"), category="upstream"),
    BadInput("global batch not divisible by the processes",
             edit("train.processes", 3, ("pretrain", "--method", "ce")),
             ("train.batch_size", "train.processes 3"), category="data"),
    BadInput("CUDA asked for on a machine without it",
             edit("train.device", "cuda:0", ("pretrain", "--method", "ce")),
             ("device 'cuda:0'", "auto or cpu"), category="data"),
    BadInput("params file missing", no_params, ("elsewhere.yaml", "--params")),
    BadInput("params file not YAML", file_params("train: [1, 2\nseed: 0\n"), ("not valid YAML", "line")),
    BadInput("params file not a mapping", file_params("- 1\n- 2\n"), ("expected a mapping",)),
]

# Names that become paths or command-line words must stay inside the project.
TABLE += [
    BadInput("method key climbing out of the project", method_key("../../outside/x"),
             ("methods", "'../../outside/x'", "letter followed by letters"), "names",
             outside_untouched),
    BadInput("method key climbing out, given to pretrain",
             method_key("../../outside/x", ("pretrain", "--method", "../../outside/x")),
             ("methods", "'../../outside/x'"), "names", outside_untouched),
    BadInput("method key with a space", method_key("my method"), ("'my method'",), "names"),
    BadInput("method key with a dash", method_key("ce-2"), ("'ce-2'",), "names"),
    BadInput("method key with an at sign", method_key("ce@2"), ("'ce@2'",), "names"),
    BadInput("teacher named by a path climbing out of the project",
             edit("methods.gml_student.teacher", "../../outside/keep"),
             ("methods.gml_student.teacher", "'../../outside/keep' is not a method"), "names",
             outside_untouched),
    BadInput("preset name climbing out of the presets", lambda p, params: [
        "preset", "../../params"], ("preset name '../../params'",), "names"),
    BadInput("preset name with a slash", lambda p, params: ["preset", "presets/x"],
             ("preset name 'presets/x'",), "names"),
]

# Values `check` must refuse because a stage would refuse or misuse them later.
TABLE += [
    BadInput(name, setup, fragments, "check")
    for name, setup, fragments in (
        ("seed beyond numpy's range", edit("seeds", [0, 2**40]), ("seeds", "less than or equal")),
        ("a seed listed twice", edit("seeds", [1, 2, 1]), ("seeds", "seed 1 twice")),
        ("infinite classifier learning rate", edit("classify.lr", float("inf")),
         ("classify.lr", "finite")),
        ("NaN flow learning rate", edit("dlsa.flow.lr", float("nan")), ("dlsa.flow.lr",)),
        ("empty tau grid", edit("classify.tau_grid", []),
         ("classify.tau_grid", "at least one value")),
        ("repeated tau", edit("classify.tau_grid", [0.5, 0.5]), ("classify.tau_grid", "0.5 twice")),
        ("few-shot threshold above the many-shot one", edit("eval.few_below", 500),
         ("eval.few_below", "at most many_above + 1")),
        ("warm-up longer than training", edit("train.schedule.warmup_epochs", 50),
         ("train.schedule.warmup_epochs", "at most the 2 epochs")),
        ("warm-up longer than one method's training",
         edit("methods.ce.train", {"epochs": 3, "schedule": {"warmup_epochs": 4}}),
         ("methods.ce.train.schedule.warmup_epochs", "at most the 3 epochs")),
        ("milestone after the last epoch",
         edit("train.schedule", {"kind": "step", "milestones": [1, 40]}),
         ("train.schedule.milestones", "40 would never be reached")),
        ("nesterov without momentum", edit("train.optim", {"momentum": 0.0, "nesterov": True}),
         ("train.optim.nesterov", "momentum > 0")),
        ("one DLSA cluster", edit("dlsa.flow.num_clusters", 1), ("dlsa.flow.num_clusters", ">= 2")),
        ("classifier kind twice", edit("classify.kinds", ["linear", "cosine", "linear"]),
         ("classify.kinds", "'linear' twice")),
        ("DLSA base kind twice", edit("dlsa.base_kinds", ["cosine", "cosine"]),
         ("dlsa.base_kinds", "'cosine' twice")),
        ("epochs given as true", edit("train.epochs", True), ("train.epochs", "valid integer")),
        ("learning rate given as a string", edit("classify.lr", "0.1"),
         ("classify.lr", "valid number", "'0.1'")),
        ("flag given as a string", edit("dlsa.flow.use_purity", "yes"),
         ("dlsa.flow.use_purity", "valid boolean")),
        ("method option of the wrong type", edit("methods.paco.options.alpha", "oops"),
         ("methods.paco.options.alpha", "type float")),
        ("method option out of range", edit("methods.paco.options.momentum", 1.5),
         ("methods.paco.options.momentum", "<= 1")),
        ("empty list of values to choose on val", edit("methods.mbib.options.beta", []),
         ("methods.mbib.options.beta", "must list at least one value")),
        ("swept value out of range", edit("methods.mbib.options.beta", [1, -2]),
         ("methods.mbib.options.beta", "lists -2.0, which must be >= 0")),
        ("swept value of the wrong type", edit("methods.bib.options.beta", [1, "5"]),
         ("methods.bib.options.beta", "items must be a number", "'5'")),
        ("value listed twice in a sweep", edit("methods.bib.options.beta", [5, 5.0]),
         ("methods.bib.options.beta", "lists 5 twice")),
        ("list for an option that cannot be swept",
         edit("methods.paco.options.key_augment", ["crop", "simclr"]),
         ("methods.paco.options.key_augment", "takes one name", "only numeric options")),
        ("two options swept at once",
         edit("methods.mbib.options", {"a": [0.1, 0.2], "beta": [1, 5]}),
         ("methods.mbib.options.beta", "besides 'a'", "sweep one option at a time")),
    )
]

# Inputs that do not match each other.
TABLE += [
    BadInput("splits file of another dataset",
             edit_splits(lambda splits: splits.update(dataset="mnist_lt"),
                         ["pretrain", "--method", "ce"]),
             ("data/splits/digits_lt.json", "made for mnist_lt"), "mismatch"),
    BadInput("split index past the images",
             edit_splits(lambda splits: splits["test"]["indices"].__setitem__(-1, 10**6),
                         ["pretrain", "--method", "ce"]),
             ("data/splits/digits_lt.json", "points past the"), "mismatch"),
    BadInput("bank labels that disagree with its class counts",
             with_bank(counts_disagree, ["classify", "--method", "ce"]),
             ("banks/ce/seed0.h5", "class_counts says class 0 has 151"), "mismatch"),
    BadInput("route on a bank of another backbone",
             with_cascade(lambda path: write_bank(path, checkpoint="e" * 64),
                          ["route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/other.h5"]),
             ("banks/other.h5", "another backbone", "checkpoint eeeeeeeeeeee"), "mismatch"),
    BadInput("route --out naming a file",
             with_cascade(write_bank, ["route", "--model", "models/dlsa/ce/seed0", "--bank",
                                       "banks/other.h5", "--out", "params.yaml"]),
             ("--out params.yaml", "is a file"), "mismatch"),
    BadInput("route --out naming a folder of other files",
             with_cascade(write_bank, ["route", "--model", "models/dlsa/ce/seed0", "--bank",
                                       "banks/other.h5", "--out", "banks"]),
             ("--out banks", "not prediction tables"), "mismatch"),
    BadInput("params file not UTF-8", lambda p, params: (
        params.clear(), (p / "params.yaml").write_bytes(b"seed: 0\n# caf\xe9\n"), ["check"])[-1],
        ("params.yaml", "not UTF-8"), "mismatch"),
    BadInput("metrics file of the wrong shape for the report", wrong_shape_results,
             ("results/classify/ce/seed0/metrics.json", "JSON object of objects",
              "tailbank classify --method ce"), "mismatch"),
    BadInput("a GPU index asked for on a machine without one",
             both(with_bank(write_bank, []), edit("analyze.use_gpu", True,
                                                  ("analyze", "--method", "ce"))),
             ("params.yaml: analyze.use_gpu", "faiss sees none"), "mismatch"),
    BadInput("more DLSA clusters than rows",
             both(with_bank(write_bank, []), edit("dlsa.flow.num_clusters", 400,
                                                  ("dlsa", "--method", "ce"))),
             ("dlsa.flow.num_clusters", "400 clusters", "banks/ce/seed0.h5"), "mismatch"),
]

# Outputs that cannot be written are found before any training.
TABLE += [
    BadInput("results folder is a file (classify)",
             blocking_file("results", ["classify", "--method", "ce"], bank=True),
             ("results: is a file where tailbank needs a folder",), "writable"),
    BadInput("DLSA model folder is a file",
             blocking_file("models/dlsa/ce/seed0", ["dlsa", "--method", "ce"], bank=True),
             ("models/dlsa/ce/seed0: is a file where tailbank writes a folder",), "writable"),
    BadInput("analysis folder is a file",
             blocking_file("results/analyze/ce/seed0", ["analyze", "--method", "ce"], bank=True),
             ("results/analyze/ce/seed0: is a file",), "writable"),
    BadInput("reports folder is a file", blocking_file("reports", ["report"]),
             ("reports: is a file",), "writable"),
    BadInput("model folder is a file (pretrain)",
             blocking_file("models/ce", ["pretrain", "--method", "ce"]),
             ("models/ce: is a file",), "writable"),
    BadInput("checkpoint folder is a file (pretrain)",
             blocking_file("checkpoints", ["pretrain", "--method", "ce"]),
             ("checkpoints: is a file",), "writable"),
    BadInput("bank path is a folder (dump)", lambda p, params: (
        (p / "models/ce/seed0").mkdir(parents=True), (p / "models/ce/seed0/model.pt").write_text("x"),
        (p / "banks/ce/seed0.h5").mkdir(parents=True), ["dump", "--method", "ce"])[-1],
        ("banks/ce/seed0.h5: is a folder where tailbank writes a file",), "writable"),
]

# Torch files crafted to run code: refused, and nothing runs.
TABLE += [
    BadInput("crafted model checkpoint (dump)",
             crafted("models/ce/seed0/model.pt", ["dump", "--method", "ce"]),
             ("models/ce/seed0/model.pt", "unreadable model checkpoint"), "pickle", nothing_ran),
    BadInput("crafted teacher checkpoint (student pretrain)",
             crafted("models/gml_teacher/seed0/model.pt", ["pretrain", "--method", "gml_student"],
                     prepare=True),
             ("models/gml_teacher/seed0/model.pt", "unreadable model checkpoint"), "pickle",
             nothing_ran),
    BadInput("crafted training checkpoint (pretrain resume)",
             crafted("checkpoints/pretrain/ce/seed0.pt", ["pretrain", "--method", "ce"], prepare=True),
             ("checkpoints/pretrain/ce/seed0.pt", "unreadable training checkpoint"), "pickle",
             nothing_ran),
    BadInput("crafted DLSA model (route)",
             crafted("models/dlsa/ce/seed0/model.pt", ["route", "--model", "models/dlsa/ce/seed0",
                                                  "--bank", "banks/ce/seed0.h5"], bank=True),
             ("models/dlsa/ce/seed0/model.pt", "not a readable DLSA model"), "pickle", nothing_ran),
    BadInput("crafted DLSA flow checkpoint (dlsa resume)",
             crafted("checkpoints/dlsa/ce/seed0/filter0.pt", ["dlsa", "--method", "ce"], bank=True),
             ("checkpoints/dlsa/ce/seed0/filter0.pt", "cannot be read"), "pickle", nothing_ran),
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
    write_bank(root / "banks" / "ce" / "seed0.h5")
    here = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, ["dlsa", "--method", "ce"])
        assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    CASCADE_DIR.append(root / "models/dlsa/ce/seed0")


def _small_params() -> dict:
    params = tiny_params()
    params["dlsa"].update(base_kinds=["balanced_softmax"], num_filters=2, device="cpu")
    params["dlsa"]["flow"].update(epochs=2, num_clusters=3, selection="likelihood")
    params["dlsa"]["classifier"].update(epochs=2)
    params["classify"].update(epochs=2)
    return params


def test_the_table_has_at_least_25_cases() -> None:
    assert len(TABLE) >= 60 and len({case.name for case in TABLE}) == len(TABLE)
    for category in CATEGORIES:
        cases = [case.name for case in TABLE if case.category == category]
        assert len(cases) >= 3, f"{category}: only {cases}"
    assert {case.category for case in TABLE} <= set(CATEGORIES)


@pytest.mark.parametrize("case", TABLE, ids=[case.name for case in TABLE])
def test_bad_input_gets_one_line(case: BadInput, tmp_path: Path, monkeypatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep.txt").write_text("mine")
    monkeypatch.chdir(project)
    params = _small_params()
    command = case.setup(project, params)
    if params:
        (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, command)
    message = result.stderr.strip()
    assert result.exit_code == 2, f"{case.name}: exit {result.exit_code}\n{result.output}"
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith("tailbank: error: "), message
    for fragment in case.fragments:
        assert fragment in message, f"{case.name}: {fragment!r} not in {message!r}"
    if case.after is not None:
        case.after(project)


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = _small_params()
    params["train"]["epochs"] = -3
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match="train.epochs"):
        CliRunner().invoke(app, ["check", "--debug"], catch_exceptions=False)


# A full disk, or a file-size limit (RLIMIT_FSIZE; writes then fail with EFBIG, which tailbank
# treats like ENOSPC): one line, the previous outputs intact, no temporary file left.


def untrained_model(project: Path, params: dict) -> None:
    """models/ce/seed0/model.pt of an untrained ResNet-20 (dump needs no trained weights)."""
    from pipeline.methods import build_method

    _prepare(params)
    counts = json.loads((project / "data/splits/digits_lt.json").read_text())["class_counts"]
    method = build_method("ce", backbone="resnet20", in_channels=1, class_counts=counts, seed=0)
    payload = {"format": "tailbank-model/1", "method": "ce", "kind": "ce",
               "backbone": "resnet20", "in_channels": 1, "dataset": "digits_lt",
               "class_counts": counts, "options": {}, "seed": 0, "best_epoch": 0,
               "params_digest": "", "state_dict": method.state_dict()}
    (project / "models/ce/seed0").mkdir(parents=True, exist_ok=True)
    torch.save(payload, project / "models/ce/seed0/model.pt")


def previous_outputs(project: Path, files: tuple[str, ...]) -> dict[str, bytes]:
    """Stand-ins for the outputs of an earlier run, which must survive the failed one."""
    for name in files:
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"earlier run: {name}".encode())
    return {name: (project / name).read_bytes() for name in files}


def run_with_file_size_limit(command: list[str], limit: int, skip_space_check: bool) -> tuple[int, str]:
    """Run the CLI in a forked child whose files may not grow past ``limit`` bytes."""
    import resource
    import signal

    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(read)
            os.dup2(write, 2)  # HDF5 and other C code write to the descriptor
            sys.stderr = os.fdopen(2, "w", buffering=1)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            if skip_space_check:  # make the write itself fail, past the early check
                from stages import dump, outputs

                outputs.check_space = dump.check_space = lambda target, needed: None
            try:
                result = app(command, standalone_mode=False)
                code = result if isinstance(result, int) else 0
            except SystemExit as error:
                code = int(error.code or 0)
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as stream:
        stderr = stream.read()
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status), stderr


DISK_FULL = {
    "dump, found before the forward passes": (
        ["dump", "--method", "ce"], 100_000, False, ("banks/ce/seed0.h5",),
        "no space left for banks/ce/seed0.h5: it needs about"),
    "dump, while HDF5 writes": (
        ["dump", "--method", "ce"], 100_000, True, ("banks/ce/seed0.h5",),
        "no space left writing banks/ce/seed0.h5 (File too large)"),
    "pretrain, its checkpoint": (
        ["pretrain", "--method", "ce"], 200_000, False,
        ("models/ce/seed0/model.pt", "results/pretrain/ce/seed0/metrics.json"),
        "no space left writing checkpoints/pretrain/ce/seed0.pt"),
    "classify, its metrics": (
        ["classify", "--method", "ce"], 300, False,
        ("results/classify/ce/seed0/metrics.json", "results/classify/ce/seed0/per_class/linear.csv"),
        "no space left writing .tailbank/staging/"),
}


@pytest.mark.parametrize("case", sorted(DISK_FULL))
def test_a_full_disk_is_one_line_and_keeps_the_previous_outputs(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    command, limit, skip_check, kept, fragment = DISK_FULL[case]
    monkeypatch.chdir(tmp_path)
    params = _small_params()
    params["train"]["epochs"] = 1
    params["classify"]["kinds"] = ["linear", "cosine"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if command[0] == "dump":
        untrained_model(tmp_path, params)
    elif command[0] == "pretrain":
        _prepare(params)
    else:
        (tmp_path / "banks").mkdir()
        write_bank(tmp_path / "banks/ce/seed0.h5")
    before = previous_outputs(tmp_path, kept)
    code, stderr = run_with_file_size_limit(command, limit, skip_check)
    lines = [line for line in stderr.splitlines() if line.startswith("tailbank")]
    assert code == 2 and len(lines) == 1, stderr
    assert lines[0].startswith("tailbank: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in stderr and "HDF5-DIAG" not in stderr, stderr
    assert {name: (tmp_path / name).read_bytes() for name in kept} == before
    left = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")
            or (p.parent == tmp_path / ".tailbank/staging" and p.name != ".lock")]
    assert not left, left
