"""The training loop: learning, exact resume, best-on-val selection, divergence, callbacks."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, NamedTuple

import pytest
import torch
from torch import Tensor

from pipeline.engine import (
    EpochRecord,
    NonFiniteError,
    OptimConfig,
    ScheduleConfig,
    TrainConfig,
    evaluate_accuracy,
    train,
)
from pipeline.engine.checkpoint import read_payload
from pipeline.engine.loop import clip_gradients
from pipeline.errors import PipelineError
from pipeline.methods import CrossEntropy, Method, NoOptions, StepOutput, build_method
from pipeline.models import build_backbone
from tests.pipeline.engine.fakes import NUM_CLASSES, FakeLoader, toy_loaders

COUNTS = torch.tensor([8, 8, 8])
CPU = torch.device("cpu")


def recipe(epochs: int = 3, **changes: object) -> TrainConfig:
    schedule = ScheduleConfig(kind="cosine", warmup_epochs=1, milestones=())
    settings = dict(epochs=epochs, optim=OptimConfig(lr=0.05), schedule=schedule, seed=11)
    settings.update(changes)
    return TrainConfig(**settings)


class NoisyCrossEntropy(CrossEntropy):
    """CE on inputs jittered from the *global* generator, with a step-counting buffer.

    The jitter makes the run depend on the global random state (so resume must restore it);
    the buffer stands in for a method's queues (so resume must restore buffers).
    """

    name: ClassVar[str] = "noisy_ce"

    def __init__(self, seed: int) -> None:
        backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1, seed=seed)
        super().__init__(backbone, COUNTS, NoOptions())
        self.register_buffer("optimizer_steps", torch.zeros((), dtype=torch.int64))

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        return super().training_step(images + 0.1 * torch.randn_like(images), labels, index)

    def after_optimizer_step(self) -> None:
        self.optimizer_steps += 1


class Crash(Exception):
    """Simulates the process dying after an epoch's checkpoint was written."""


def crash_after(epoch: int):
    def on_epoch_end(record: EpochRecord) -> None:
        if record.epoch == epoch:
            raise Crash

    return on_epoch_end


def test_training_learns_the_toy_task() -> None:
    train_loader, val_loader = toy_loaders()
    method = build_method(
        "ce", backbone="resnet20", in_channels=1, class_counts=COUNTS.tolist(), seed=0
    )
    result = train(method, train_loader, val_loader, recipe(epochs=4), device=CPU)
    assert [record.epoch for record in result.history] == [0, 1, 2, 3]
    assert result.best_val_acc >= 0.75
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[-1].lr == pytest.approx(0.0, abs=1e-12)


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path: Path) -> None:
    train_loader, val_loader = toy_loaders()
    straight = NoisyCrossEntropy(seed=0)
    expected = train(
        straight,
        train_loader,
        val_loader,
        recipe(),
        device=CPU,
        checkpoint_path=tmp_path / "straight.pt",
    )

    checkpoint = tmp_path / "resumed.pt"
    with pytest.raises(Crash):
        train(
            NoisyCrossEntropy(seed=0),
            train_loader,
            val_loader,
            recipe(),
            device=CPU,
            checkpoint_path=checkpoint,
            on_epoch_end=crash_after(1),
        )
    assert read_payload(checkpoint)["next_epoch"] == 2
    torch.manual_seed(999)  # a new process would not share the crashed one's random state
    resumed = NoisyCrossEntropy(seed=42)  # weights must come from the checkpoint
    replayed: list[int] = []
    result = train(
        resumed,
        train_loader,
        val_loader,
        recipe(),
        device=CPU,
        checkpoint_path=checkpoint,
        on_epoch_end=lambda record: replayed.append(record.epoch),
    )

    assert replayed == [0, 1, 2]
    assert int(resumed.optimizer_steps) == 3 * len(train_loader)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    for key, value in expected.best_state.items():
        assert torch.equal(value, result.best_state[key]), key
    assert result.history == expected.history
    assert result.best_epoch == expected.best_epoch


def test_a_finished_checkpoint_returns_without_training(tmp_path: Path) -> None:
    train_loader, val_loader = toy_loaders()
    checkpoint = tmp_path / "run.pt"
    first = train(
        NoisyCrossEntropy(seed=0),
        train_loader,
        val_loader,
        recipe(epochs=1),
        device=CPU,
        checkpoint_path=checkpoint,
    )
    steps: list[tuple[int, int]] = []
    again = train(
        NoisyCrossEntropy(seed=1),
        train_loader,
        val_loader,
        recipe(epochs=1),
        device=CPU,
        checkpoint_path=checkpoint,
        on_step=lambda epoch, step: steps.append((epoch, step)),
    )
    assert steps == []
    assert again.history == first.history


class ScriptedValidation(CrossEntropy):
    """Trains normally but scores a scripted number of the 4 val images right each epoch."""

    name: ClassVar[str] = "scripted"

    def __init__(self, correct_per_epoch: list[int]) -> None:
        backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1, seed=0)
        super().__init__(backbone, COUNTS, NoOptions())
        self.correct_per_epoch = correct_per_epoch
        self.register_buffer("evaluations", torch.zeros((), dtype=torch.int64))

    def predict(self, images: Tensor) -> Tensor:
        correct = self.correct_per_epoch[int(self.evaluations)]
        self.evaluations += 1
        logits = torch.zeros(len(images), NUM_CLASSES)
        logits[:correct, 0] = 1.0  # val labels are all 0: the first `correct` are right
        logits[correct:, 1] = 1.0
        return logits


def test_best_epoch_is_chosen_on_val_and_ties_keep_the_earlier() -> None:
    train_loader, _ = toy_loaders()
    val_loader = FakeLoader(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64), 4)
    method = ScriptedValidation([2, 3, 3, 1])
    snapshots: list[dict[str, Tensor]] = []
    result = train(
        method,
        train_loader,
        val_loader,
        recipe(epochs=4),
        device=CPU,
        on_epoch_end=lambda _: snapshots.append(
            {key: value.clone() for key, value in method.state_dict().items()}
        ),
    )
    assert [record.val_acc for record in result.history] == [0.5, 0.75, 0.75, 0.25]
    assert result.best_epoch == 1
    assert result.best_val_acc == 0.75
    assert int(result.best_state["evaluations"]) == 2
    for key, value in snapshots[1].items():
        assert torch.equal(result.best_state[key], value), key
    assert all(value.device.type == "cpu" for value in result.best_state.values())


class Diverging(CrossEntropy):
    """CE whose loss (or gradient) turns NaN at one chosen iteration."""

    name: ClassVar[str] = "diverging"

    def __init__(self, fail_at: int, culprit: str) -> None:
        backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1, seed=0)
        super().__init__(backbone, COUNTS, NoOptions())
        self.fail_at, self.culprit, self.calls = fail_at, culprit, 0
        self.root = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        output = super().training_step(images, labels, index)
        self.calls += 1
        if self.calls <= self.fail_at:
            return output
        if self.culprit == "loss":
            return StepOutput(loss=output.loss * float("nan"), logits=output.logits)
        # d sqrt(x)/dx is infinite at 0, and 0 * inf = NaN: a finite loss, a NaN gradient.
        return StepOutput(loss=output.loss + 0 * self.root.sqrt().sum(), logits=output.logits)


@pytest.mark.parametrize("culprit", ["loss", "gradient"])
def test_non_finite_values_stop_training_and_keep_the_checkpoint(
    tmp_path: Path, culprit: str
) -> None:
    train_loader, val_loader = toy_loaders()
    checkpoint = tmp_path / "run.pt"
    steps = len(train_loader)
    method = Diverging(fail_at=steps + 1, culprit=culprit)  # epoch 1, step 1 (0-based)
    with pytest.raises(
        NonFiniteError, match=f"non-finite {culprit} at epoch 2/3, step 2/3"
    ) as raised:
        train(method, train_loader, val_loader, recipe(), device=CPU, checkpoint_path=checkpoint)
    assert (raised.value.epoch, raised.value.step) == (1, 1)
    assert isinstance(raised.value, PipelineError)
    assert read_payload(checkpoint)["next_epoch"] == 1
    assert all(
        torch.isfinite(value).all()
        for value in method.state_dict().values()
        if value.is_floating_point()
    )


def test_callbacks_see_every_step_and_epoch() -> None:
    train_loader, val_loader = toy_loaders()
    steps: list[tuple[int, int]] = []
    records: list[EpochRecord] = []
    method = build_method(
        "bsce", backbone="resnet20", in_channels=1, class_counts=COUNTS.tolist(), seed=0
    )
    result = train(
        method,
        train_loader,
        val_loader,
        recipe(epochs=2),
        device="cpu",
        on_epoch_end=records.append,
        on_step=lambda epoch, step: steps.append((epoch, step)),
    )
    assert steps == [(epoch, step) for epoch in range(2) for step in range(len(train_loader))]
    assert records == result.history
    assert all(0.0 <= record.train_acc <= 1.0 for record in records)


def test_parameter_groups_may_scale_the_learning_rate() -> None:
    class FrozenHeadLr(CrossEntropy):
        name: ClassVar[str] = "frozen_head_lr"

        def parameter_groups(self) -> list[dict]:
            head = list(self.backbone.fc.parameters())
            trunk = [p for n, p in self.backbone.named_parameters() if not n.startswith("fc.")]
            return [{"params": trunk}, {"params": head, "lr_scale": 0.0, "weight_decay": 0.0}]

    backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1, seed=0)
    method = FrozenHeadLr(backbone, COUNTS, NoOptions())
    head_before = method.backbone.fc.weight.detach().clone()
    trunk_before = method.backbone.stem[0].weight.detach().clone()
    train_loader, val_loader = toy_loaders()
    train(method, train_loader, val_loader, recipe(epochs=1), device=CPU)
    assert torch.equal(method.backbone.fc.weight, head_before)
    assert not torch.equal(method.backbone.stem[0].weight, trunk_before)


def test_clip_gradients_returns_the_norm_before_clipping() -> None:
    weight = torch.nn.Parameter(torch.zeros(2))
    weight.grad = torch.tensor([3.0, 4.0])
    optimizer = torch.optim.SGD([weight], lr=0.1)
    assert clip_gradients(optimizer, None).item() == pytest.approx(5.0)
    assert clip_gradients(optimizer, 1.0).item() == pytest.approx(5.0)
    assert torch.linalg.vector_norm(weight.grad).item() == pytest.approx(1.0, rel=1e-5)


def test_evaluate_accuracy_restores_the_mode_and_refuses_empty_loaders() -> None:
    method: Method = ScriptedValidation([3])
    loader = FakeLoader(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64), 4)
    method.train()
    assert evaluate_accuracy(method, loader, CPU) == 0.75
    assert method.training
    empty = FakeLoader(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64), 3)
    with pytest.raises(PipelineError, match="validation loader yielded no samples"):
        evaluate_accuracy(method, empty, CPU)
    with pytest.raises(PipelineError, match="training loader has no batches"):
        train(method, empty, loader, recipe(epochs=1), device=CPU)


class ViewLoader(FakeLoader):
    """A FakeLoader whose epochs also yield the extra views asked for (images + 1, + 2, ...)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.asked: list[tuple[str | None, ...]] = []

    def epoch(self, epoch: int, views: tuple[str | None, ...] = ()):  # type: ignore[override]
        self.asked.append(tuple(views))
        for batch in super().epoch(epoch):
            extra = tuple(batch.images + offset for offset in range(1, len(views) + 1))
            yield ViewBatch(batch.images, batch.labels, batch.index, extra)


class ViewBatch(NamedTuple):
    images: Tensor
    labels: Tensor
    index: Tensor
    views: tuple[Tensor, ...]


class TwoViewCrossEntropy(CrossEntropy):
    """CE that asks for two extra views and records what reaches its step."""

    name: ClassVar[str] = "two_view_ce"

    def __init__(self) -> None:
        backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1, seed=0)
        super().__init__(backbone, COUNTS, NoOptions())
        self.seen: list[tuple[Tensor, ...]] = []

    def view_augmentations(self) -> tuple[str | None, ...]:
        return (None, "simclr")

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor,
                      *views: Tensor) -> StepOutput:
        self.seen.append((images, *views))
        return super().training_step(images, labels, index)


def test_a_multi_view_method_gets_its_views_in_order() -> None:
    train_loader, val_loader = toy_loaders()
    loader = ViewLoader(train_loader.images, train_loader.labels, 8, seed=5)
    method = TwoViewCrossEntropy()
    train(method, loader, val_loader, recipe(epochs=1), device=CPU)
    assert loader.asked == [(None, "simclr")]
    assert len(method.seen) == len(loader)
    for images, first, second in method.seen:
        assert torch.equal(first, images + 1) and torch.equal(second, images + 2)
    # A loader that cannot give the views is named, not silently ignored.
    with pytest.raises(PipelineError, match=r"2 extra view\(s\) .* loader cannot make them"):
        train(TwoViewCrossEntropy(), train_loader, val_loader, recipe(epochs=1), device=CPU)


def test_methods_hear_each_epoch_before_it_trains_also_after_a_resume(tmp_path: Path) -> None:
    class EpochAware(NoisyCrossEntropy):
        def __init__(self, seed: int) -> None:
            super().__init__(seed)
            self.heard: list[tuple[int, int]] = []

        def before_epoch(self, epoch: int, epochs: int) -> None:
            self.heard.append((epoch, epochs))

    train_loader, val_loader = toy_loaders()
    checkpoint = tmp_path / "run.pt"
    first = EpochAware(seed=0)
    with pytest.raises(Crash):
        train(first, train_loader, val_loader, recipe(), device=CPU, checkpoint_path=checkpoint,
              on_epoch_end=crash_after(1))
    resumed = EpochAware(seed=0)
    train(resumed, train_loader, val_loader, recipe(), device=CPU, checkpoint_path=checkpoint)
    assert first.heard == [(0, 3), (1, 3)]
    assert resumed.heard == [(2, 3)]
