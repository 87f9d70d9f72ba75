"""The learning-rate schedule: warm-up, step milestones, cosine end, and config checks."""

from __future__ import annotations

from itertools import pairwise

import pytest

from pipeline.engine import OptimConfig, ScheduleConfig, TrainConfig, lr_at
from pipeline.errors import PipelineError

STEP = ScheduleConfig(kind="step", warmup_epochs=5, milestones=(160, 180), gamma=0.1)
COSINE = ScheduleConfig(kind="cosine", warmup_epochs=2, milestones=(), gamma=0.1)


def test_warmup_starts_at_lr_over_warmup_iterations_and_reaches_lr() -> None:
    iterations_per_epoch = 10
    first = lr_at(1 / iterations_per_epoch, 0.1, STEP, 200)
    assert first == pytest.approx(0.1 / (5 * iterations_per_epoch))
    assert lr_at(2.5, 0.1, STEP, 200) == pytest.approx(0.05)
    assert lr_at(5.0, 0.1, STEP, 200) == pytest.approx(0.1)


def test_warmup_is_linear_per_iteration() -> None:
    rates = [lr_at(k / 4, 0.2, STEP, 200) for k in range(1, 21)]
    steps = [later - earlier for earlier, later in pairwise(rates)]
    assert steps == pytest.approx([0.2 / 20] * 19)


def test_step_decay_applies_from_each_milestone_epoch_on() -> None:
    assert lr_at(160.0, 0.1, STEP, 200) == pytest.approx(0.1)  # last iteration of epoch 159
    assert lr_at(160.01, 0.1, STEP, 200) == pytest.approx(0.01)
    assert lr_at(180.0, 0.1, STEP, 200) == pytest.approx(0.01)
    assert lr_at(180.5, 0.1, STEP, 200) == pytest.approx(0.001)
    assert lr_at(200.0, 0.1, STEP, 200) == pytest.approx(0.001)


def test_cosine_peaks_after_warmup_halves_midway_and_ends_at_zero() -> None:
    assert lr_at(2.0, 0.05, COSINE, 12) == pytest.approx(0.05)
    assert lr_at(7.0, 0.05, COSINE, 12) == pytest.approx(0.025)
    assert lr_at(12.0, 0.05, COSINE, 12) == pytest.approx(0.0, abs=1e-15)
    rates = [lr_at(2 + k / 10, 0.05, COSINE, 12) for k in range(101)]
    assert all(later <= earlier for earlier, later in pairwise(rates))


def test_no_warmup_starts_at_the_base_rate() -> None:
    schedule = ScheduleConfig(kind="cosine", warmup_epochs=0, milestones=())
    assert lr_at(0.0, 0.1, schedule, 10) == pytest.approx(0.1)


def test_warmup_longer_than_the_run_never_divides_by_zero() -> None:
    assert lr_at(1.0, 0.1, ScheduleConfig(kind="cosine", warmup_epochs=5), 1) == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ScheduleConfig(kind="poly"), "ScheduleConfig.kind must be one of 'step', 'cosine', got 'poly'"),
        (lambda: ScheduleConfig(milestones=(180, 160)), "increasing"),
        (lambda: ScheduleConfig(warmup_epochs=-1), "warmup_epochs"),
        (lambda: OptimConfig(lr=0.0), "OptimConfig.lr must be > 0"),
        (lambda: OptimConfig(momentum=0.0, nesterov=True), "nesterov"),
        (lambda: TrainConfig(epochs=0), "epochs"),
        (lambda: TrainConfig(epochs=1, max_grad_norm=0.0), "max_grad_norm"),
        (lambda: TrainConfig(epochs=4, schedule=ScheduleConfig(warmup_epochs=5)),
         "warmup_epochs must be at most the 4 epochs"),
        (lambda: TrainConfig(epochs=100, schedule=ScheduleConfig(kind="step", milestones=(60, 160))),
         r"milestones must lie within the 100 epochs \(160 would never be reached\)"),
        (lambda: ScheduleConfig(milestones=(60, 60)), "lists 60 twice"),
    ],
)
def test_bad_recipes_are_refused(build, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        build()
