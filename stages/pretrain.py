"""Stage ``pretrain@<method>``: train a backbone with one long-tail method, keep the best on val."""

from __future__ import annotations

import json
from dataclasses import asdict
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
from pipeline.methods import Method, build_method
from stages.configs import train_config
from stages.errors import StageError
from stages.io import save_torch, write_json
from stages.layout import (
    model_path,
    pretrain_results,
    require_file,
    resolve_device,
    resume_path,
    splits_path,
)
from stages.outputs import StageOutputs, check_writable
from stages.params import Params, TrainParams, section_digest
from stages.prepare import open_source
from stages.progress import StepProgress, log

MODEL_FORMAT = "tailbank-model/1"


def run(params: Params, method_name: str, seed: int) -> Path:
    """Train ``methods.<method_name>`` with training seed ``seed``; write
    ``models/<method>/seed<seed>/model.pt`` and its metrics.

    An interrupted run resumes from ``checkpoints/pretrain/<method>/seed<seed>.pt``, which is
    removed once the stage completes. Started by torchrun (``WORLD_SIZE`` set), this process
    trains as its rank: the training batches are split across ranks, and rank 0 alone writes.

    Returns:
        The path of the best-on-val model checkpoint.
    """
    rank = rank_from_environment()
    device = rank_device(resolve_device(params.train_for(method_name).device), rank)
    start_process_group(rank, device)
    try:
        if not rank.is_main:
            return _train_and_save(params, method_name, seed, rank, device, None)
        check_writable(resume_path(method_name, seed), folder=False)
        folders = [model_path(method_name, seed).parent, pretrain_results(method_name, seed)]
        with StageOutputs(folders=folders) as out:
            _train_and_save(params, method_name, seed, rank, device, out)
        resume_path(method_name, seed).unlink(missing_ok=True)
        return model_path(method_name, seed)
    finally:
        stop_process_group()


def rank_device(device: torch.device, rank: Rank) -> torch.device:
    """One GPU per local rank; CPU ranks share the CPU."""
    if rank.distributed and device.type == "cuda":
        return torch.device("cuda", rank.local_rank)
    return device


def _train_and_save(
    params: Params,
    method_name: str,
    seed: int,
    rank: Rank,
    device: torch.device,
    out: StageOutputs | None,
) -> Path:
    """Train on every rank; rank 0 (``out`` given) writes the model and results into ``out``."""
    entry = params.method(method_name)
    recipe = params.train_for(method_name)
    source = open_source(params.data)
    splits = load_splits(params.data.dataset, source)

    teacher_payload = load_teacher_payload(params, method_name, seed, splits)
    set_seed(seed)
    method = build_method(
        entry.kind,
        backbone=recipe.backbone,
        in_channels=source.channels,
        class_counts=splits.class_counts.tolist(),
        options=entry.options,
        seed=seed,
        teacher=restore_method(teacher_payload) if teacher_payload else None,
        normalisation=(source.mean, source.std),
    ).to(device)
    common = {"batch_size": recipe.batch_size, "seed": seed, "device": device,
              "num_workers": recipe.num_workers}
    loaders = {
        "train": make_loader(source, splits.train, train=True, sampling=method.sampling,
                             augment=recipe.augment, rank=rank.rank,
                             world_size=rank.world_size, **common),
        "val": make_loader(source, splits.val, train=False, **common),
    }
    config = train_config(recipe, seed)
    checkpoint = resume_path(method_name, seed)
    if out is None:
        train(method, loaders["train"], loaders["val"], config, device=device,
              checkpoint_path=checkpoint)
        return model_path(method_name, seed)
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint.is_file():
        read_payload(checkpoint)  # a damaged or crafted file is refused before we say "resuming"
        log(f"pretrain {method_name}: resuming the interrupted run from {checkpoint} "
            "(earlier epochs are replayed into the curves)")
    if rank.distributed:
        log(f"pretrain {method_name}: {rank.world_size} data-parallel ranks, global batch "
            f"{recipe.batch_size}")
    results = out.staged(pretrain_results(method_name, seed))
    live_dir = results / "live"

    title = f"pretrain {method_name}"
    steps_per_epoch = len(loaders["train"])
    with StepProgress(title, recipe.epochs * steps_per_epoch) as progress, CurveLogger(
        live_dir
    ) as curves:

        def on_epoch_end(record: EpochRecord) -> None:
            curves.log(record)
            progress.epoch_line(
                f"{title} epoch {record.epoch + 1}/{recipe.epochs} loss {record.train_loss:.4f} "
                f"train_acc {record.train_acc:.4f} val_acc {record.val_acc:.4f} lr {record.lr:.4g}"
            )

        def on_step(epoch: int, step: int) -> None:
            progress.advance_to(epoch * steps_per_epoch + step + 1, f"epoch {epoch + 1}")

        try:
            result = train(
                method,
                loaders["train"],
                loaders["val"],
                config,
                device=device,
                checkpoint_path=checkpoint,
                on_epoch_end=on_epoch_end,
                on_step=on_step,
            )
        except NonFiniteError as error:
            raise StageError(f"pretrain {method_name}: {error}") from None

    target = out.staged(model_path(method_name, seed))
    save_torch(target, model_payload(params, method_name, seed, recipe, result, splits,
                                     source.channels, teacher_payload))
    last = result.history[-1]
    write_json(
        results / "metrics.json",
        {
            "best_epoch": result.best_epoch + 1,
            "best_val_acc": round(result.best_val_acc, 6),
            "epochs": len(result.history),
            "last_train_acc": round(last.train_acc, 6),
            "last_train_loss": round(last.train_loss, 6),
        },
    )
    return target


def model_payload(
    params: Params,
    method_name: str,
    seed: int,
    recipe: TrainParams,
    result: TrainResult,
    splits: Splits,
    in_channels: int,
    teacher_payload: dict[str, Any] | None,
) -> dict[str, Any]:
    """Everything ``dump`` needs to rebuild the model without reading params.yaml.

    A student's state already holds its teacher's weights, so only the teacher's description
    is kept, for rebuilding its skeleton.
    """
    entry = params.method(method_name)
    payload = {
        "format": MODEL_FORMAT,
        "method": method_name,
        "kind": entry.kind,
        "backbone": recipe.backbone,
        "in_channels": in_channels,
        "dataset": splits.dataset,
        "class_counts": splits.class_counts.tolist(),
        "options": dict(entry.options),
        "seed": seed,
        "best_epoch": result.best_epoch,
        "params_digest": section_digest(seed, params.data, recipe, entry),
        "state_dict": {key: value.detach().cpu() for key, value in result.best_state.items()},
    }
    if teacher_payload:
        payload["teacher"] = {key: value for key, value in teacher_payload.items()
                              if key != "state_dict"}
    return payload


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


def load_model_payload(path: Path) -> dict[str, Any]:
    """Read a tailbank model checkpoint, refusing foreign or truncated files in one line."""
    return read_payload(path, MODEL_FORMAT, what="model checkpoint",
                        fix="delete it and re-run its pretrain stage")


def restore_method(payload: dict[str, Any]) -> Method:
    """Rebuild a method from a checkpoint payload; load its weights when the payload has them.

    A distilled student's payload carries its teacher's description (without weights, which
    live in the student's own state): the teacher is rebuilt as a skeleton first.
    """
    teacher = restore_method(payload["teacher"]) if "teacher" in payload else None
    method = build_method(
        payload["kind"],
        backbone=payload["backbone"],
        in_channels=int(payload["in_channels"]),
        class_counts=payload["class_counts"],
        options=payload["options"],
        teacher=teacher,
    )
    if "state_dict" in payload:
        try:
            method.load_state_dict(payload["state_dict"])
        except RuntimeError as error:
            raise StageError(
                f"{model_path(payload['method'], payload['seed'])}: its weights do not fit the "
                "architecture it "
                f"names ({payload['kind']}, {payload['backbone']}: {_first_mismatch(error)}); "
                "re-run its pretrain stage"
            ) from None
    return method


def _first_mismatch(error: RuntimeError) -> str:
    """The first concrete complaint of ``load_state_dict`` (its first line is a heading)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else "state dict mismatch"
    return detail if len(detail) <= 160 else detail[:157] + "..."


def load_splits(dataset: str, source: DatasetSource | None = None) -> Splits:
    """The prepare stage's splits of ``dataset``; checked against ``source`` when given (its
    dataset, pools, index range and class counts), so a splits file of other data is refused
    before any work."""
    path = require_file(splits_path(dataset), "tailbank prepare")
    try:
        payload = json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StageError(f"{path}: not valid JSON; delete it and run `tailbank prepare`") from None
    splits = Splits.from_dict(payload, origin=str(path))
    if source is not None:
        splits.check_against(source, origin=str(path))
    return splits


class CurveLogger:
    """Training curves through DVCLive (``dvcyaml=False``: dvc.yaml declares the plots)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._live: Any = None

    def __enter__(self) -> CurveLogger:
        self._live = _live_without_git(self._directory)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.end()

    def log(self, record: EpochRecord) -> None:
        """One step per epoch: train loss / accuracy, val accuracy and learning rate."""
        self._live.step = record.epoch
        for name, value in asdict(record).items():
            if name != "epoch":
                self._live.log_metric(name, float(value))
        self._live.next_step()


def _live_without_git(directory: Path) -> Any:
    """A DVCLive logger that also works in a git repository with no commit yet.

    DVCLive asks git for the current revision while it starts and fails in a freshly
    initialised repository (scmrepo raises ``SCMError: Empty git repo``, which DVCLive does not
    catch). tailbank uses none of DVCLive's git integration (``dvcyaml=False``,
    ``save_dvc_exp=False``), so that failure is turned into "no repository".
    """
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    class _Live(Live):
        def _init_dvc(self) -> None:
            try:
                super()._init_dvc()
            except SCMError:
                self._dvc_repo = None
                self._save_dvc_exp = False

    return _Live(str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
