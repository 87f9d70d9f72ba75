"""Per-iteration learning rate: linear warm-up, then step decay or cosine annealing."""

from __future__ import annotations

import math

from pipeline.engine.config import ScheduleConfig


def lr_at(epoch_float: float, base_lr: float, schedule: ScheduleConfig, epochs: int) -> float:
    """Learning rate of the iteration that ends at training progress ``epoch_float``.

    The iteration ``s`` (0-based) of epoch ``e`` (0-based) with ``n`` iterations per epoch
    ends at ``e + (s + 1) / n``. During warm-up (progress <= ``warmup_epochs``) the rate
    grows linearly, so the first iteration gets ``base_lr / (warmup iterations)`` and the
    last warm-up iteration ``base_lr`` (Goyal et al. 2017). Afterwards:

    - ``step``: ``base_lr * gamma^k``, k = milestones already passed (epoch ``m`` and later
      run at the decayed rate);
    - ``cosine``: ``base_lr * (1 + cos(pi * t)) / 2`` with t the post-warm-up progress in
      [0, 1], reaching 0 at the end of training (Loshchilov & Hutter 2017).

    Args:
        epoch_float: progress in epochs at the end of the iteration, in [0, epochs].
        base_lr: the peak learning rate.
        schedule: warm-up length and decay rule.
        epochs: length of the run in epochs.

    Returns:
        The learning rate.
    """
    progress = min(max(epoch_float, 0.0), float(epochs))
    warmup = schedule.warmup_epochs
    if warmup > 0 and progress <= warmup:
        return base_lr * progress / warmup
    if schedule.kind == "step":
        passed = sum(1 for milestone in schedule.milestones if progress > milestone)
        return base_lr * schedule.gamma**passed
    fraction = (progress - warmup) / (epochs - warmup)
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * fraction))
