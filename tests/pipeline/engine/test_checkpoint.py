"""Checkpoints: atomic replacement, random-state round trip, and one-line refusals."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.engine import OptimConfig, TrainConfig, load_checkpoint, save_checkpoint
from pipeline.engine import checkpoint as checkpoint_module
from pipeline.engine.records import EpochRecord, TrainingProgress
from pipeline.errors import PipelineError

CONFIG = TrainConfig(epochs=4, optim=OptimConfig(lr=0.1), seed=3)


def model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def progress_after_one_epoch(model: torch.nn.Module) -> TrainingProgress:
    progress = TrainingProgress()
    progress.finish_epoch(EpochRecord(0, 1.5, 0.25, 0.5, 0.1), model)
    return progress


def test_round_trip_restores_weights_progress_and_random_streams(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer(0)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    path = tmp_path / "nested" / "run.pt"
    save_checkpoint(path, model, optimizer, progress_after_one_epoch(model), CONFIG)
    expected = (torch.rand(2), np.random.rand(2), random.random())

    other, other_optimizer = model_and_optimizer(1)
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    progress = load_checkpoint(path, other, other_optimizer, CONFIG)

    assert torch.equal(torch.rand(2), expected[0])
    assert np.array_equal(np.random.rand(2), expected[1])
    assert random.random() == expected[2]
    assert progress.history == [EpochRecord(0, 1.5, 0.25, 0.5, 0.1)]
    assert (progress.next_epoch, progress.best_epoch, progress.best_val_acc) == (1, 0, 0.5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key
    assert other_optimizer.state_dict()["state"][0]["momentum_buffer"] is not None


def test_a_failed_write_leaves_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, optimizer = model_and_optimizer(0)
    path = tmp_path / "run.pt"
    save_checkpoint(path, model, optimizer, progress_after_one_epoch(model), CONFIG)
    before = path.read_bytes()

    def dies_half_way(payload: object, stream) -> None:
        stream.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, optimizer, TrainingProgress(), CONFIG)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]


def test_a_different_recipe_is_refused(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer(0)
    path = tmp_path / "run.pt"
    save_checkpoint(path, model, optimizer, TrainingProgress(), CONFIG)
    changed = TrainConfig(epochs=5, optim=OptimConfig(lr=0.1), seed=3)
    with pytest.raises(PipelineError, match=f"{path}: checkpoint was written with a different"):
        load_checkpoint(path, model, optimizer, changed)


def test_another_model_is_refused(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer(0)
    path = tmp_path / "run.pt"
    save_checkpoint(path, model, optimizer, TrainingProgress(), CONFIG)
    wider = torch.nn.Linear(3, 5)
    with pytest.raises(PipelineError, match="does not fit this method"):
        load_checkpoint(path, wider, torch.optim.SGD(wider.parameters(), lr=0.1), CONFIG)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"not a zip", "unreadable training checkpoint"), (None, "not a tailbank training")],
)
def test_foreign_files_are_refused_in_one_line(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "run.pt"
    if content is None:
        torch.save({"format": "something else"}, path)
    else:
        path.write_bytes(content)
    model, optimizer = model_and_optimizer(0)
    with pytest.raises(PipelineError, match=message) as raised:
        load_checkpoint(path, model, optimizer, CONFIG)
    assert "\n" not in str(raised.value)
    assert str(path) in str(raised.value)


def test_background_write_keeps_the_weights_of_the_epoch_it_was_given(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer(0)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    saved = {key: value.clone() for key, value in model.state_dict().items()}
    writer = checkpoint_module.BackgroundCheckpointer()
    path = tmp_path / "run.pt"
    writer.save(path, checkpoint_module.checkpoint_payload(
        model, optimizer, progress_after_one_epoch(model), CONFIG))
    with torch.no_grad():  # the next epoch trains while the checkpoint is written
        for parameter in model.parameters():
            parameter.add_(1.0)
    writer.wait()
    restored, restored_optimizer = model_and_optimizer(1)
    load_checkpoint(path, restored, restored_optimizer, CONFIG)
    for key, value in restored.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_background_write_error_reaches_the_training_thread(tmp_path: Path) -> None:
    model, optimizer = model_and_optimizer(0)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    writer = checkpoint_module.BackgroundCheckpointer()
    writer.save(blocker / "run.pt", checkpoint_module.checkpoint_payload(
        model, optimizer, TrainingProgress(), CONFIG))
    with pytest.raises(OSError):
        writer.wait()
    writer.wait()  # reported once
