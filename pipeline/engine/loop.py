"""The training loop: SGD or AdamW with a per-iteration schedule, best-on-val selection, resume.

The loop knows only the :class:`~pipeline.methods.Method` interface and two loaders:
the training loader has ``len(loader)`` batches per epoch and ``loader.epoch(e)`` yields
batches (``.images [B, C, H, W]``, ``.labels [B]``, ``.index [B]``) in an order that depends
only on the seed and ``e``; the val loader is read through ``loader.epoch(0)``. Because the
order of an epoch never depends on earlier epochs, a run resumed at an epoch boundary from a
checkpoint replays exactly what the uninterrupted run would have done.

A method that trains on several views of each image (``Method.view_augmentations``) gets them
from ``loader.epoch(e, views=...)`` as ``batch.views`` and receives them after ``index``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from pipeline.engine.checkpoint import (
    BackgroundCheckpointer,
    checkpoint_payload,
    load_checkpoint,
)
from pipeline.engine.config import OptimConfig, TrainConfig
from pipeline.engine.distributed import (
    average_batchnorm_statistics,
    is_main_process,
    sum_over_ranks,
    wrap_for_data_parallel,
)
from pipeline.engine.precision import MixedPrecision
from pipeline.engine.records import EpochRecord, TrainingProgress, TrainResult
from pipeline.engine.schedule import lr_at
from pipeline.engine.seeding import set_seed, use_deterministic_cuda
from pipeline.errors import NonFiniteError, PipelineError
from pipeline.methods import Method


class Batch(Protocol):
    """One batch of a loader (``views``: only when a training epoch was asked for them)."""

    images: Tensor
    labels: Tensor
    index: Tensor


class EpochLoader(Protocol):
    """A loader whose epoch ``e`` is a pure function of its seed and ``e``.

    The training loader of a multi-view method must also take ``epoch(e, views=...)`` (see
    :meth:`pipeline.data.EpochLoader.epoch`).
    """

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterable[Batch]: ...


@dataclass(frozen=True)
class EpochTotals:
    """Mean training loss and accuracy of one epoch and the learning rate it ended with."""

    loss: float
    accuracy: float
    lr: float


def train(
    method: Method,
    train_loader: EpochLoader,
    val_loader: EpochLoader,
    config: TrainConfig,
    *,
    device: torch.device | str,
    checkpoint_path: Path | None = None,
    on_epoch_end: Callable[[EpochRecord], None] | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train ``method`` for ``config.epochs`` epochs and keep its best state on val.

    After each epoch: val accuracy, best-state update (strictly higher accuracy wins),
    checkpoint (atomic), then ``on_epoch_end``. Inside a torch.distributed process group the
    method trains under DistributedDataParallel (each rank's ``train_loader`` yields its slice of
    every global batch), losses and accuracies are summed over ranks, and only rank 0 writes the
    checkpoint and calls ``on_epoch_end`` and ``on_step``. If ``checkpoint_path`` exists at the
    start, training resumes from it and ``on_epoch_end`` is first replayed for the saved epochs
    so that curves are complete. A fresh run seeds every global random stream with
    ``config.seed``; a resumed one restores them from the checkpoint.

    Args:
        method: the method to train (moved to ``device``).
        train_loader: training batches, ``len(train_loader)`` per epoch.
        val_loader: balanced validation batches, read through ``epoch(0)``.
        config: the recipe.
        device: where to train.
        checkpoint_path: written after every epoch; resumed from when it exists.
        on_epoch_end: called with each epoch's record.
        on_step: called with the 0-based (epoch, iteration) after each optimiser step.

    Returns:
        Best epoch, its val accuracy and CPU state, and the per-epoch history.

    Raises:
        NonFiniteError: a loss or gradient is NaN or infinite (the checkpoint keeps the
            last finished epoch).
        PipelineError: an empty loader or an unusable checkpoint.
    """
    if len(train_loader) == 0:
        raise PipelineError("the training loader has no batches; check the train split")
    device = torch.device(device)
    use_deterministic_cuda(config.deterministic)
    method.to(device)
    optimizer = make_optimizer(method, config.optim)
    precision = MixedPrecision(config.precision, device)
    main = is_main_process()
    if not main:
        on_epoch_end = on_step = None
    progress = start_or_resume(
        method, optimizer, config, checkpoint_path, on_epoch_end, precision
    )
    step_model = wrap_for_data_parallel(method, device, sync_batchnorm=config.sync_batchnorm)
    checkpointer = BackgroundCheckpointer()
    try:
        for epoch in range(progress.next_epoch, config.epochs):
            totals = train_one_epoch(
                method, optimizer, train_loader, config, epoch, device, on_step, step_model,
                precision,
            )
            average_batchnorm_statistics(method)
            record = EpochRecord(
                epoch=epoch,
                train_loss=totals.loss,
                train_acc=totals.accuracy,
                val_acc=evaluate_accuracy(method, val_loader, device),
                lr=totals.lr,
            )
            progress.finish_epoch(record, method)
            if checkpoint_path is not None and main:
                # written while the next epoch trains; the last one is on disk before return
                checkpointer.save(checkpoint_path, checkpoint_payload(
                    method, optimizer, progress, config, precision))
            if on_epoch_end is not None:
                on_epoch_end(record)
    except BaseException as error:
        # the last good checkpoint lands before the error propagates; if it failed, say so
        lost = checkpointer.wait(raise_error=False)
        if lost is not None:
            error.add_note(f"the checkpoint of the last finished epoch was not written either "
                           f"({type(lost).__name__}: {lost}); resuming starts from an earlier one")
        raise
    checkpointer.wait()
    return progress.result()


def start_or_resume(
    method: Method,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    checkpoint_path: Path | None,
    on_epoch_end: Callable[[EpochRecord], None] | None,
    precision: MixedPrecision | None = None,
) -> TrainingProgress:
    """Fresh progress (seeded) or the progress of an existing checkpoint (history replayed)."""
    if checkpoint_path is None or not checkpoint_path.exists():
        set_seed(config.seed)
        return TrainingProgress()
    progress = load_checkpoint(checkpoint_path, method, optimizer, config, precision=precision)
    if on_epoch_end is not None:
        for record in progress.history:
            on_epoch_end(record)
    return progress


def make_optimizer(method: Method, optim: OptimConfig) -> torch.optim.Optimizer:
    """``optim.kind``'s optimiser over the method's parameter groups (a group's own settings
    win).

    SGD with momentum, or AdamW with decoupled weight decay (Loshchilov & Hutter 2019). The
    schedule sets every group's rate before each step (`set_learning_rate`), so ``lr`` here is
    only the initial value.
    """
    if optim.kind == "adamw":
        return torch.optim.AdamW(
            method.parameter_groups(),
            lr=optim.lr,
            betas=optim.betas,
            eps=optim.eps,
            weight_decay=optim.weight_decay,
        )
    return torch.optim.SGD(
        method.parameter_groups(),
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
    )


def train_one_epoch(
    method: Method,
    optimizer: torch.optim.Optimizer,
    loader: EpochLoader,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
    on_step: Callable[[int, int], None] | None,
    step_model: torch.nn.Module | None = None,
    precision: MixedPrecision | None = None,
) -> EpochTotals:
    """One pass over ``loader.epoch(epoch)`` with the learning rate set every iteration.

    ``step_model`` computes the step (the method itself, or the method inside
    DistributedDataParallel, whose backward averages gradients over ranks); ``precision``
    autocasts it (fp32 when ``None``).
    """
    step_model = method if step_model is None else step_model
    precision = precision or MixedPrecision("fp32", device)
    method.train()
    method.before_epoch(epoch, config.epochs)
    steps = len(loader)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = torch.zeros((), dtype=torch.int64, device=device)
    lr = 0.0
    for step, batch in enumerate(epoch_batches(loader, epoch, method.view_augmentations())):
        lr = lr_at(epoch + (step + 1) / steps, config.optim.lr, config.schedule, config.epochs)
        set_learning_rate(optimizer, lr)
        labels = batch.labels.to(device, non_blocking=True)
        views = [view.to(device, non_blocking=True) for view in getattr(batch, "views", ())]
        with precision.autocast():
            output = step_model(
                batch.images.to(device, non_blocking=True),
                labels,
                batch.index.to(device, non_blocking=True),
                *views,
            )
        optimizer.zero_grad(set_to_none=True)
        precision.backward(output.loss)
        precision.unscale(optimizer)
        gradient_norm = clip_gradients(optimizer, config.max_grad_norm)
        # under fp16 an overflowing gradient is expected: the scaler skips that step
        checked_norm = torch.zeros(()) if precision.scales_loss else gradient_norm
        check_finite(output.loss, checked_norm, epoch, step, config.epochs, steps)
        precision.step(optimizer)
        method.after_optimizer_step()
        loss_sum += output.loss.detach().double() * labels.numel()
        correct += (output.logits.argmax(dim=1) == labels).sum()
        seen += labels.numel()
        if on_step is not None:
            on_step(epoch, step)
    for total in (loss_sum, correct, seen):
        sum_over_ranks(total)
    if seen.item() == 0:
        raise PipelineError(f"the training loader yielded no samples in epoch {epoch + 1}")
    count = seen.item()
    return EpochTotals(loss=loss_sum.item() / count, accuracy=correct.item() / count, lr=lr)


def epoch_batches(
    loader: EpochLoader, epoch: int, view_augments: tuple[str | None, ...]
) -> Iterable[Batch]:
    """``loader.epoch(epoch)``, asking for the extra views a method needs, if any.

    Loaders of single-view methods are only ever called with the epoch, so any object with
    ``epoch(e)`` serves them.

    Raises:
        PipelineError: a loader that cannot give the views, or a batch without them.
    """
    if not view_augments:
        yield from loader.epoch(epoch)
        return
    wanted = f"the method trains on {len(view_augments)} extra view(s) of each image but"
    if "views" not in inspect.signature(loader.epoch).parameters:
        raise PipelineError(f"{wanted} the training loader cannot make them; build it with "
                            "pipeline.data.make_loader")
    for batch in loader.epoch(epoch, views=view_augments):  # type: ignore[call-arg]
        if len(getattr(batch, "views", ())) != len(view_augments):
            raise PipelineError(f"{wanted} a training batch came without them")
        yield batch


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` times the group's optional ``lr_scale``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None) -> Tensor:
    """Global L2 norm of all gradients before clipping; clip to ``max_norm`` if given.

    Returns:
        Scalar norm on the parameters' device (not synchronised here).
    """
    parameters = [
        parameter
        for group in optimizer.param_groups
        for parameter in group["params"]
        if parameter.grad is not None
    ]
    if not parameters:
        raise PipelineError("the loss has no gradient for any parameter; check the method")
    if max_norm is not None:
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    norms = torch.stack([torch.linalg.vector_norm(parameter.grad) for parameter in parameters])
    return torch.linalg.vector_norm(norms)


def check_finite(
    loss: Tensor, gradient_norm: Tensor, epoch: int, step: int, epochs: int, steps: int
) -> None:
    """Raise :class:`NonFiniteError` if the loss or the gradient norm is NaN or infinite.

    Summing both costs one device synchronisation per step instead of two.
    """
    if bool(torch.isfinite(loss.detach() + gradient_norm.to(loss.device))):
        return
    culprit = "gradient" if bool(torch.isfinite(loss.detach())) else "loss"
    raise NonFiniteError(
        f"non-finite {culprit} at epoch {epoch + 1}/{epochs}, step {step + 1}/{steps}; lower "
        "optim.lr or set max_grad_norm (the checkpoint of the last finished epoch is kept)",
        epoch=epoch,
        step=step,
    )


def evaluate_accuracy(method: Method, loader: EpochLoader, device: torch.device | str) -> float:
    """Top-1 accuracy of ``method.predict`` over ``loader.epoch(0)``, in eval mode.

    Args:
        method: the method to evaluate (its train/eval mode is restored afterwards).
        loader: batches with ``.images`` and ``.labels``.
        device: where to run.

    Returns:
        The share of samples whose argmax logit is their label.

    Raises:
        PipelineError: the loader yields no sample.
    """
    device = torch.device(device)
    was_training = method.training
    method.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    try:
        with torch.no_grad():
            for batch in loader.epoch(0):
                labels = batch.labels.to(device, non_blocking=True)
                logits = method.predict(batch.images.to(device, non_blocking=True))
                correct += (logits.argmax(dim=1) == labels).sum()
                total += labels.numel()
    finally:
        method.train(was_training)
    if total == 0:
        raise PipelineError("the validation loader yielded no samples; check the val split")
    return correct.item() / total
