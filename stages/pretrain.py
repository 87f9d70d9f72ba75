"""Stage ``pretrain@<method>``: train a backbone with one long-tail method, keep the best on val."""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.data import DatasetSource, Splits, make_loader
from pipeline.engine import (
    EpochRecord,
    NonFiniteError,
    TrainResult,
    set_seed,
    train,
)
from pipeline.engine.checkpoint import read_payload
from pipeline.engine.distributed import (
    Rank,
    rank_from_environment,
    start_process_group,
    stop_process_group,
)
from pipeline.methods import build_method
from pipeline.models.checkpoint import load_model_payload, model_payload, restore_method
from stages.configs import data_source, train_config
from stages.errors import StageError
from stages.io import json_ready, save_torch, write_json
from stages.layout import (
    REDO_PREPARE,
    model_path,
    pretrain_results,
    require_file,
    require_splits,
    resolve_device,
    resume_path,
    sweep_resume_dir,
)
from stages.outputs import StageOutputs, check_writable
from stages.params import Params, TrainParams, section_digest
from stages.progress import StepProgress, log
from stages.sweep import (
    Candidate,
    Outcome,
    divergence,
    plan_runs,
    select_on_val,
    sweep_record,
)


def run(params: Params, method_name: str, seed: int) -> Path:
    """Train ``methods.<method_name>`` with training seed ``seed``; write
    ``models/<method>/seed<seed>/model.pt`` and its metrics.

    An interrupted run resumes from ``checkpoints/pretrain/<method>/seed<seed>.pt``, which is
    removed once the stage completes. An option given a list of values (``beta: [0, 1, 5]``)
    trains one backbone per value, each resumable from its own file under
    ``checkpoints/pretrain/<method>/seed<seed>/``, and keeps the best on val (`stages.sweep`).
    Started by torchrun (``WORLD_SIZE`` set), this process trains as its rank: the training
    batches are split across ranks, and rank 0 alone writes.

    Returns:
        The path of the best-on-val model checkpoint.
    """
    rank = rank_from_environment()
    device = rank_device(resolve_device(params.train_for(method_name).device), rank)
    start_process_group(rank, device)
    try:
        if not rank.is_main:
            _train_and_save(params, method_name, seed, rank, device, None)
            return model_path(method_name, seed)
        check_writable(resume_path(method_name, seed), folder=False)
        check_writable(sweep_resume_dir(method_name, seed), folder=True)
        folders = [model_path(method_name, seed).parent, pretrain_results(method_name, seed)]
        with StageOutputs(folders=folders) as out:
            kept = _train_and_save(params, method_name, seed, rank, device, out)
        resume_path(method_name, seed).unlink(missing_ok=True)
        shutil.rmtree(sweep_resume_dir(method_name, seed), ignore_errors=True)
        assert kept is not None  # rank 0 always keeps a run
        log(f"saved {model_path(method_name, seed)} (best epoch {kept.best_epoch + 1}, "
            f"val acc {kept.best_val_acc:.4f})")
        return model_path(method_name, seed)
    finally:
        stop_process_group()


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """One GPU per local rank; CPU ranks share the CPU."""
    if rank.distributed and device.type == "cuda":
        return torch.device("cuda", rank.local_rank)
    return device


@dataclass(frozen=True)
class _Setting:
    """What every training run of one pretrain stage shares."""

    method_name: str
    seed: int
    kind: str
    recipe: TrainParams
    source: DatasetSource
    splits: Splits
    teacher_payload: dict[str, Any] | None
    rank: Rank
    device: torch.device

    def checkpoint(self, candidate: Candidate) -> Path:
        """The resume file of one run: one per value when the stage sweeps an option."""
        if candidate.label is None:
            return resume_path(self.method_name, self.seed)
        return sweep_resume_dir(self.method_name, self.seed) / f"{candidate.label}.pt"


def _train_and_save(
    params: Params,
    method_name: str,
    seed: int,
    rank: Rank,
    device: torch.device,
    out: StageOutputs | None,
) -> TrainResult | None:
    """Train every candidate on every rank; rank 0 (``out`` given) keeps the best on val and
    writes the model and results into ``out``.

    Returns:
        The kept run on rank 0; None on the other ranks.
    """
    entry = params.method(method_name)
    data = params.data
    source = data_source(data)
    splits = Splits.read(require_splits(data.dataset), source, fix=REDO_PREPARE)
    setting = _Setting(method_name, seed, entry.kind, params.train_for(method_name), source,
                       splits, load_teacher_payload(params, method_name, seed, splits), rank,
                       device)
    runs = plan_runs(entry)
    if runs.sweep is not None and rank.is_main:
        log(f"pretrain {method_name}: {len(runs.candidates)} backbones, one per "
            f"{runs.sweep.option} in {list(runs.sweep.values)}; the best on val is kept")
    outcomes = [_outcome(setting, candidate, single=runs.sweep is None)
                for candidate in runs.candidates]
    if out is None:
        return None
    chosen = select_on_val(outcomes, method_name)
    result = chosen.result
    assert result is not None  # select_on_val returns a finished run
    results = out.staged(pretrain_results(method_name, seed))
    with CurveLogger(results / "live") as curves:
        for record in result.history:
            curves.log(record)
    target = out.staged(model_path(method_name, seed))
    save_torch(target, model_payload(
        method=method_name, kind=entry.kind, backbone=setting.recipe.backbone,
        in_channels=source.channels, dataset=splits.dataset,
        class_counts=splits.class_counts.tolist(), options=chosen.candidate.options, seed=seed,
        best_epoch=result.best_epoch,
        params_digest=section_digest(seed, params.data, setting.recipe, entry),
        state=result.best_state, teacher=setting.teacher_payload))
    last = result.history[-1]
    metrics: dict[str, Any] = {
        "best_epoch": result.best_epoch + 1,
        "best_val_acc": round(result.best_val_acc, 6),
        "epochs": len(result.history),
        "last_train_acc": round(last.train_acc, 6),
        "last_train_loss": round(last.train_loss, 6),
    }
    if runs.sweep is not None:
        metrics["sweep"] = json_ready(sweep_record(runs.sweep, outcomes, chosen))
        log(f"pretrain {method_name}: kept {chosen.candidate.label} (val accuracy "
            f"{result.best_val_acc:.4f} at epoch {result.best_epoch + 1})")
    write_json(results / "metrics.json", metrics)
    return result


def _outcome(setting: _Setting, candidate: Candidate, single: bool) -> Outcome:
    """Train one candidate. A divergence fails the stage when it trains one backbone only;
    in a sweep it is recorded and the other values go on."""
    try:
        return Outcome(candidate, result=_fit(setting, candidate))
    except NonFiniteError as error:
        title = f"pretrain {setting.method_name}"
        if single:
            raise StageError(f"{title}: {error}") from None
        if setting.rank.is_main:
            log(f"{title} {candidate.label}: {error}; left out of the choice on val")
        return Outcome(candidate, diverged=divergence(error))


def _fit(setting: _Setting, candidate: Candidate) -> TrainResult:
    """Train one backbone with ``candidate``'s options, resuming from its checkpoint."""
    recipe, rank = setting.recipe, setting.rank
    set_seed(setting.seed)
    teacher = setting.teacher_payload
    # rebuilt (weights loaded) just before the student, as the student's argument always was
    restored = (restore_method(teacher, str(model_path(teacher["method"], teacher["seed"])))
                if teacher else None)
    method = build_method(
        setting.kind,
        backbone=recipe.backbone,
        in_channels=setting.source.channels,
        class_counts=setting.splits.class_counts.tolist(),
        options=candidate.options,
        seed=setting.seed,
        teacher=restored,
    ).to(setting.device)
    common = {"batch_size": recipe.batch_size, "seed": setting.seed, "device": setting.device,
              "num_workers": recipe.num_workers}
    train_loader = make_loader(setting.source, setting.splits.train, train=True,
                               sampling=method.sampling, augment=recipe.augment,
                               rank=rank.rank, world_size=rank.world_size, **common)
    val_loader = make_loader(setting.source, setting.splits.val, train=False, **common)
    config = train_config(recipe, setting.seed)
    checkpoint = setting.checkpoint(candidate)
    if not rank.is_main:
        return train(method, train_loader, val_loader, config, device=setting.device,
                     checkpoint_path=checkpoint)
    title = " ".join(filter(None, ["pretrain", setting.method_name, candidate.label]))
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint.is_file():
        read_payload(checkpoint)  # a damaged or crafted file is refused before we say "resuming"
        log(f"{title}: resuming the interrupted run from {checkpoint} (earlier epochs are "
            "replayed)")
    if rank.distributed:
        log(f"{title}: {rank.world_size} data-parallel ranks, global batch {recipe.batch_size}")
    steps_per_epoch = len(train_loader)
    with StepProgress(title, recipe.epochs * steps_per_epoch, "steps") as progress:

        def on_epoch_end(record: EpochRecord) -> None:
            progress.epoch_line(
                f"{title} epoch {record.epoch + 1}/{recipe.epochs} loss {record.train_loss:.4f} "
                f"train_acc {record.train_acc:.4f} val_acc {record.val_acc:.4f} lr {record.lr:.4g}"
            )

        def on_step(epoch: int, step: int) -> None:
            progress.advance_to(epoch * steps_per_epoch + step + 1, f"epoch {epoch + 1}")

        return train(method, train_loader, val_loader, config, device=setting.device,
                     checkpoint_path=checkpoint, on_epoch_end=on_epoch_end, on_step=on_step)


def load_teacher_payload(
    params: Params, method_name: str, seed: int, splits: Splits
) -> dict | None:
    """The trained teacher of a distilled student (``methods.<m>.teacher``, the same seed),
    checked to fit."""
    teacher = params.method(method_name).teacher
    if teacher is None:
        return None
    path = require_file(model_path(teacher, seed),
                        f"tailbank pretrain --method {teacher} --seed {seed}")
    payload = load_model_payload(path)
    if payload["class_counts"] != splits.class_counts.tolist():
        raise StageError(
            f"{path}: the teacher was trained on other class counts than data/splits of "
            f"'{splits.dataset}'; re-run `tailbank pretrain --method {teacher} --seed {seed}`"
        )
    return payload


class CurveLogger:
    """Training curves in DVCLive's layout, written by DVCLive's own writers.

    ``live/plots/metrics/<name>.tsv`` (one row per epoch) and ``live/metrics.json`` (the last
    values and step) come from ``dvclive.plots.Metric`` and ``dvclive.serialize.dump_json``,
    the writers ``dvclive.Live`` uses, so the files are those ``Live(dvcyaml=False,
    save_dvc_exp=False, report=None)`` wrote. ``Live`` itself is not started: while it starts
    it runs ``dvc init`` in a git repository without DVC, fails in one with no commit
    (scmrepo's "Empty git repo", uncaught in dvclive 3.49) and posts to DVC Studio when a
    token is set, and no option of ``Live`` (nor ``DVCLIVE_*`` variable) turns that off;
    tailbank wants none of it (dvc.yaml declares the plots).
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._metrics: dict[str, Any] = {}
        self._summary: dict[str, Any] = {}

    def __enter__(self) -> CurveLogger:
        # as Live(resume=False): curves of an earlier run never mix with this one's
        shutil.rmtree(self._directory / "plots" / "metrics", ignore_errors=True)
        (self._directory / "metrics.json").unlink(missing_ok=True)
        self._directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def log(self, record: EpochRecord) -> None:
        """One step per epoch: train loss / accuracy, val accuracy and learning rate.

        The step is the 1-based epoch, the count the logs, ``best_epoch`` and the report use
        (``record.epoch`` is 0-based).
        """
        from dvclive.plots import Metric
        from dvclive.serialize import dump_json

        for name, value in asdict(record).items():
            if name == "epoch":
                continue
            value = float(value)
            # as Live.log_metric: a non-finite value is written as its text
            value = value if math.isfinite(value) else str(value)
            metric = self._metrics.setdefault(name, Metric(name, str(self._directory / "plots")))
            metric.step = record.epoch + 1
            metric.dump(value)
            self._summary[name] = value
        self._summary["step"] = record.epoch + 1
        dump_json(self._summary, str(self._directory / "metrics.json"))
