"""Does the GML student beat its teacher? The knobs of GML's Appendix A.3, side by side.

The paper's students surpass their teachers, even weaker ones (Table A.2); on digits_lt the
pipeline's student stayed below. Each row trains, for every seed, a teacher and a student
from it (the same seed for both, as the DAG does) and scores both on the test split:

    default       params.yaml's GML entries (ResNet-56 teacher -> ResNet-32 student,
                  alpha_kd 1, K 512, three independent views), E epochs each
    same-size     the teacher has the student's backbone (gml_teacher.train.backbone)
    alpha_kd=0    no distillation term (gml_student.options.alpha_kd)
    K=128         a queue a quarter as long (gml_student.options.queue_size)
    2E epochs     teacher and student both trained twice as long (methods.<m>.train.epochs)
    shared view   one view for classifier, query and key (gml_student.options.views: shared),
                  tailbank's student before the views were made independent

Everything else is params.yaml's: the data split of ``data:`` (digits_lt by default) and the
``train:`` recipe of each method (batch, SGD, cosine schedule, augmentation) but the epochs.
Both networks are kept at their best val epoch and scored with their own cosine classifier,
as ``pretrain`` keeps them and ``classify``'s "head" scores them. The interval of
student - teacher is the Student-t interval of the per-seed differences.

All in one process, on the CPU; teachers shared by rows are trained once per seed:

    PYTHONPATH=. python bench/gml_ablation.py              # E = 8, seeds 0 1 2: ~15 min
    PYTHONPATH=. python bench/gml_ablation.py --epochs 30 --rows default,same-size
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from features.uncertainty import Interval, t_interval
from pipeline.data import DatasetSource, Splits, make_loader
from pipeline.engine import evaluate_accuracy, set_seed, train
from pipeline.errors import PipelineError
from pipeline.methods import Method, build_method
from stages.configs import data_source, train_config
from stages.params import Params, load_params
from stages.prepare import draw_splits

TEACHER, STUDENT = "gml_teacher", "gml_student"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Row:
    """One ablation: what it changes from params.yaml's GML entries.

    Attributes:
        name: the row's label.
        same_size_teacher: the teacher gets the student's backbone (else params.yaml's).
        epoch_factor: both networks train ``epoch_factor * E`` epochs.
        student_options: options of the student that override params.yaml's.
    """

    name: str
    same_size_teacher: bool = False
    epoch_factor: int = 1
    student_options: Mapping[str, Any] = field(default_factory=dict)


ROWS: tuple[Row, ...] = (
    Row("default"),
    Row("same-size", same_size_teacher=True),
    Row("alpha_kd=0", student_options={"alpha_kd": 0.0}),
    Row("K=128", student_options={"queue_size": 128}),
    Row("2E epochs", epoch_factor=2),
    Row("shared view", student_options={"views": "shared"}),
)


@dataclass(frozen=True)
class Data:
    """The split of params.yaml's ``data:`` section, as ``prepare`` draws it."""

    source: DatasetSource
    splits: Splits


@dataclass(frozen=True)
class Outcome:
    """Test accuracies of one row and seed."""

    teacher: float
    student: float


def load_data(params: Params) -> Data:
    """The dataset and splits that ``tailbank prepare`` would write for ``params``."""
    data = params.data
    source = data_source(data)
    return Data(source, draw_splits(source, data))


def fit(
    params: Params,
    data: Data,
    method_name: str,
    *,
    backbone: str,
    epochs: int,
    seed: int,
    options: Mapping[str, Any],
    teacher: Method | None = None,
) -> tuple[Method, float]:
    """Train ``methods.<method_name>`` as ``pretrain`` would, with the given changes.

    Returns:
        The method at its best val epoch and its test accuracy.
    """
    recipe = params.train_for(method_name).model_copy(update={"epochs": epochs})
    source, splits = data.source, data.splits
    set_seed(seed)
    method = build_method(
        params.method(method_name).kind,
        backbone=backbone,
        in_channels=source.channels,
        class_counts=splits.class_counts.tolist(),
        options=options,
        seed=seed,
        teacher=teacher,
    )
    common = {"batch_size": recipe.batch_size, "seed": seed, "device": CPU}
    train_loader = make_loader(source, splits.train, train=True, sampling=method.sampling,
                               augment=recipe.augment, **common)
    result = train(method, train_loader, make_loader(source, splits.val, train=False, **common),
                   train_config(recipe, seed), device=CPU)
    method.load_state_dict(result.best_state)
    test = make_loader(source, splits.test, train=False, **common)
    return method, evaluate_accuracy(method, test, CPU)


class Runner:
    """Trains the rows' teachers (once per backbone, epochs and seed) and students."""

    def __init__(self, params: Params, data: Data, epochs: int) -> None:
        self.params, self.data, self.epochs = params, data, epochs
        self.teachers: dict[tuple[str, int, int], tuple[Method, float]] = {}

    def teacher(self, backbone: str, epochs: int, seed: int) -> tuple[Method, float]:
        key = (backbone, epochs, seed)
        if key not in self.teachers:
            started = time.perf_counter()
            self.teachers[key] = fit(self.params, self.data, TEACHER, backbone=backbone,
                                     epochs=epochs, seed=seed,
                                     options=self.params.method(TEACHER).options)
            log(f"teacher {backbone} {epochs} ep seed {seed}: test {self.teachers[key][1]:.4f} "
                f"({time.perf_counter() - started:.0f} s)")
        return self.teachers[key]

    def run(self, row: Row, seed: int) -> Outcome:
        epochs = self.epochs * row.epoch_factor
        student_backbone = self.params.train_for(STUDENT).backbone
        teacher_backbone = (student_backbone if row.same_size_teacher
                            else self.params.train_for(TEACHER).backbone)
        teacher, teacher_acc = self.teacher(teacher_backbone, epochs, seed)
        started = time.perf_counter()
        options = {**self.params.method(STUDENT).options, **row.student_options}
        # The student freezes its teacher in place; a copy keeps the cached one untouched.
        _, student_acc = fit(self.params, self.data, STUDENT, backbone=student_backbone,
                             epochs=epochs, seed=seed, options=options,
                             teacher=copy.deepcopy(teacher))
        log(f"{row.name} seed {seed}: teacher {teacher_acc:.4f} student {student_acc:.4f} "
            f"({time.perf_counter() - started:.0f} s)")
        return Outcome(teacher_acc, student_acc)


def table(rows: Sequence[Row], outcomes: Mapping[str, list[Outcome]], backbones: str) -> str:
    """The markdown table: means over the seeds and student - teacher with its t interval."""
    lines = [
        "| row | teacher test acc (mean) | student test acc (mean) | student − teacher "
        "[95 % CI] | seeds student > teacher |",
        "|---|---:|---:|---|---:|",
    ]
    for row in rows:
        found = outcomes[row.name]
        teacher = np.array([o.teacher for o in found])
        student = np.array([o.student for o in found])
        gap = t_interval(student - teacher)
        lines.append(
            f"| {row.name} | {teacher.mean():.4f} | {student.mean():.4f} | {describe(gap)} | "
            f"{int((student > teacher).sum())}/{len(found)} |"
        )
    lines.append(f"\n{backbones}")
    return "\n".join(lines)


def describe(gap: Interval | None) -> str:
    """``+0.0123 [-0.0100, +0.0346]``, and whether the interval excludes 0."""
    if gap is None:
        return "n/a"
    text = f"{gap.value:+.4f} [{gap.low:+.4f}, {gap.high:+.4f}]"
    if gap.method == "t" and (gap.low > 0 or gap.high < 0):
        text += " (resolved)"
    return text


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--epochs", type=int, default=8, help="E, epochs of every network")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default=",".join(row.name for row in ROWS),
                        help="comma-separated row names")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    by_name = {row.name: row for row in ROWS}
    unknown = [name for name in args.rows.split(",") if name not in by_name]
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(by_name)}")
    rows = [by_name[name] for name in args.rows.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    params = load_params(args.params)
    for name in (TEACHER, STUDENT):
        try:  # the recipe must accept E (warm-up epochs, milestones) before any training
            train_config(params.train_for(name).model_copy(update={"epochs": args.epochs}), 0)
        except PipelineError as error:
            parser.error(f"--epochs {args.epochs}: {error}")
    data = load_data(params)
    runner = Runner(params, data, args.epochs)
    started = time.perf_counter()
    outcomes = {row.name: [runner.run(row, seed) for seed in seeds] for row in rows}
    counts = data.splits.class_counts
    print(f"GML student vs teacher, {params.data.dataset} (train {int(counts.sum())} images, "
          f"head {counts.max()} / tail {counts.min()}, test {len(data.splits.test.indices)}), "
          f"E = {args.epochs} epochs, seeds {args.seeds}, cpu, torch threads "
          f"{torch.get_num_threads()}, {time.perf_counter() - started:.0f} s\n")
    backbones = (f"Student {params.train_for(STUDENT).backbone}; teacher "
                 f"{params.train_for(TEACHER).backbone} (same-size: the student's). Interval: "
                 f"t across the {len(seeds)} seeds' differences.")
    print(table(rows, outcomes, backbones))


if __name__ == "__main__":
    main()
