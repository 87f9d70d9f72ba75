"""A method option chosen on val: one backbone per listed value, the best kept, resumable."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import pipeline.engine.loop as loop
from pipeline.engine import EpochRecord, NonFiniteError, TrainResult
from pipeline.methods import OptionSweep
from stages import pretrain
from stages.errors import StageError
from stages.params import load_params
from stages.prepare import run as prepare
from stages.sweep import Candidate, Outcome, select_on_val, sweep_record
from tests.stages.conftest import tiny_params


def result(val_acc: float, epochs: int = 2) -> TrainResult:
    history = [EpochRecord(epoch, 1.0 / (epoch + 1), 0.5, val_acc, 0.1) for epoch in range(epochs)]
    return TrainResult(best_epoch=epochs - 1, best_val_acc=val_acc, best_state={},
                       history=history)


def outcomes(*accuracies: float | None) -> list[Outcome]:
    """One outcome per value 0, 1, 2, ...; None for a run that diverged."""
    made = []
    for value, accuracy in enumerate(accuracies):
        candidate = Candidate({"beta": float(value)}, f"beta={float(value)!r}", float(value))
        made.append(Outcome(candidate, diverged="non-finite loss or gradient at epoch 3, step 1")
                    if accuracy is None else Outcome(candidate, result=result(accuracy)))
    return made


def test_the_best_val_accuracy_wins_and_ties_go_to_the_first_listed() -> None:
    assert select_on_val(outcomes(0.5, 0.9, 0.7), "mbib").candidate.value == 1.0
    assert select_on_val(outcomes(0.5, 0.9, 0.9), "mbib").candidate.value == 1.0
    assert select_on_val(outcomes(0.9, 0.5, 0.9), "mbib").candidate.value == 0.0


def test_a_diverged_value_is_left_out_and_all_diverged_fails() -> None:
    assert select_on_val(outcomes(None, 0.2, None), "mbib").candidate.value == 1.0
    with pytest.raises(StageError, match=r"pretrain mbib: every value of the sweep diverged "
                                         r"\(beta=0.0: non-finite .*; beta=1.0: non-finite"):
        select_on_val(outcomes(None, None), "mbib")


def test_the_record_names_every_value_and_its_val_score() -> None:
    made = outcomes(0.5, None, 0.75)
    record = sweep_record(OptionSweep("beta", (0.0, 1.0, 2.0)), made, made[2])
    assert record["option"] == "beta" and record["selected"] == 2.0
    assert record["values"] == [
        {"beta": 0.0, "best_epoch": 2, "best_val_acc": 0.5, "last_train_loss": 0.5},
        {"beta": 1.0, "best_val_acc": None,
         "diverged": "non-finite loss or gradient at epoch 3, step 1"},
        {"beta": 2.0, "best_epoch": 2, "best_val_acc": 0.75, "last_train_loss": 0.5},
    ]


def write_params(project: Path, beta: Any, epochs: int = 2) -> None:
    """Tiny params training mbib only, with ``beta`` (a number or a list)."""
    params = tiny_params()
    params["train"].update(epochs=epochs, batch_size=64, device="cpu")
    params["data"].update(max_per_class=30, val_per_class=5, test_per_class=5)
    params["methods"] = {"mbib": {"kind": "mbib", "options": {"beta": beta}}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def run_pretrain(project: Path) -> None:
    params = load_params(project / "params.yaml")
    pretrain.run(params, "mbib", 0)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, [1.0, 5.0, 2.0, 3.0])
    prepare(load_params(tmp_path / "params.yaml"))
    return tmp_path


def read_outputs(project: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics = json.loads((project / "results/pretrain/mbib/seed0/metrics.json").read_text())
    model = torch.load(project / "models/mbib/seed0/model.pt", weights_only=True)
    return metrics, model


def test_the_stage_keeps_the_value_best_on_val_and_never_loads_test(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake training scores each beta; the stage keeps beta 5 (tied with 3, listed first)."""
    val_acc = {1.0: 0.4, 5.0: 0.8, 2.0: 0.6, 3.0: 0.8}
    loaded_parts = []

    def fake_train(method, train_loader, val_loader, config, **kwargs) -> TrainResult:
        beta = method.options.beta
        trained = result(val_acc[beta])
        return TrainResult(trained.best_epoch, trained.best_val_acc,
                           {"marker": torch.tensor(beta)}, trained.history)

    def recording_loader(source, part, **kwargs):
        loaded_parts.append(part.indices.tolist())
        return real_loader(source, part, **kwargs)

    real_loader = pretrain.make_loader
    monkeypatch.setattr(pretrain, "train", fake_train)
    monkeypatch.setattr(pretrain, "make_loader", recording_loader)
    run_pretrain(project)
    metrics, model = read_outputs(project)
    assert metrics["sweep"]["selected"] == 5.0 and metrics["best_val_acc"] == 0.8
    assert [(v["beta"], v["best_val_acc"]) for v in metrics["sweep"]["values"]] == list(
        val_acc.items())
    assert model["options"]["beta"] == 5.0 and model["state_dict"]["marker"].item() == 5.0
    splits = json.loads((project / "data/splits/digits_lt.json").read_text())
    test_rows = splits["test"]["indices"]
    assert loaded_parts and test_rows not in loaded_parts
    assert not (project / "checkpoints/pretrain/mbib/seed0").exists()


class Stop(Exception):
    """Stands for a kill in the middle of the sweep."""


def counting_epochs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the epochs the engine trains (not those a resume replays)."""
    trained: list[int] = []
    real = loop.train_one_epoch

    def counted(*args: Any, **kwargs: Any):
        trained.append(args[4])
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", counted)
    return trained


def stop_after_epoch(monkeypatch: pytest.MonkeyPatch, beta: float, epoch: int) -> None:
    """Make the run of ``beta`` stop once ``epoch`` (1-based) is checkpointed."""
    real = pretrain.train

    def train(method, *args: Any, on_epoch_end: Callable | None = None, **kwargs: Any):
        def stop(record: EpochRecord) -> None:
            if on_epoch_end is not None:
                on_epoch_end(record)
            if method.options.beta == beta and record.epoch + 1 == epoch:
                raise Stop()

        return real(method, *args, on_epoch_end=stop, **kwargs)

    monkeypatch.setattr(pretrain, "train", train)


def test_an_interrupted_sweep_resumes_each_value_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = {}
    for name in ("whole", "interrupted"):
        project = tmp_path / name
        project.mkdir()
        monkeypatch.chdir(project)
        write_params(project, [0.0, 2.0])
        prepare(load_params(project / "params.yaml"))
        if name == "interrupted":
            with monkeypatch.context() as patch:
                stop_after_epoch(patch, beta=2.0, epoch=1)
                with pytest.raises(Stop):
                    run_pretrain(project)
            sweep_dir = project / "checkpoints/pretrain/mbib/seed0"
            assert sorted(p.name for p in sweep_dir.iterdir()) == ["beta=0.0.pt", "beta=2.0.pt"]
            assert not (project / "models/mbib/seed0/model.pt").exists()
        with monkeypatch.context() as patch:
            trained = counting_epochs(patch)
            run_pretrain(project)
        # beta 0 finished before the interruption and beta 2 had one of its two epochs
        assert trained == ([1] if name == "interrupted" else [0, 1, 0, 1])
        assert not (project / "checkpoints/pretrain/mbib/seed0").exists()
        outputs[name] = {path: (project / path).read_bytes() for path in (
            "models/mbib/seed0/model.pt", "results/pretrain/mbib/seed0/metrics.json",
            "results/pretrain/mbib/seed0/live/plots/metrics/val_acc.tsv")}
    assert outputs["interrupted"] == outputs["whole"]
    metrics = json.loads(outputs["whole"]["results/pretrain/mbib/seed0/metrics.json"])
    assert [value["beta"] for value in metrics["sweep"]["values"]] == [0.0, 2.0]


def test_the_chosen_model_is_the_one_its_value_trains_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each value trains from the same seed as a run of that value alone would."""
    write_params(project, [0.0, 2.0], epochs=1)
    run_pretrain(project)
    metrics, swept = read_outputs(project)
    write_params(project, metrics["sweep"]["selected"], epochs=1)
    run_pretrain(project)
    alone_metrics, alone = read_outputs(project)
    assert "sweep" not in alone_metrics
    assert alone_metrics["best_val_acc"] == metrics["best_val_acc"]
    assert swept["options"] == alone["options"]
    assert all(torch.equal(swept["state_dict"][key], alone["state_dict"][key])
               for key in alone["state_dict"])


def test_a_diverging_value_is_recorded_and_the_others_still_compete(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def diverging_train(method, *args: Any, **kwargs: Any) -> TrainResult:
        if method.options.beta == 5.0:
            raise NonFiniteError("non-finite loss at epoch 2/2, step 1/3", epoch=1, step=0)
        return result(0.1 * method.options.beta)

    monkeypatch.setattr(pretrain, "train", diverging_train)
    run_pretrain(project)
    metrics, _ = read_outputs(project)
    assert metrics["sweep"]["selected"] == 3.0
    assert metrics["sweep"]["values"][1] == {
        "beta": 5.0, "best_val_acc": None,
        "diverged": "non-finite loss or gradient at epoch 2, step 1"}
