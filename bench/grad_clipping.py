"""Do BIB and MBIB need gradient clipping? Gradient norms and losses, with and without it.

Trains each method with the recipe of params.yaml (``params.train_for(method)``, so the
default data set, backbone, schedule and learning rate) once per seed without clipping and
once with ``max_grad_norm``, side by side, and records every step's loss and global gradient
norm before clipping (what :func:`pipeline.engine.loop.clip_gradients` returns). Prints, per
run: the largest and the 99th-percentile gradient norm, the share of steps a clip at
``--clip`` would have scaled down, the largest loss, whether training diverged (a non-finite
loss or gradient, where the engine stops) and the best val accuracy. No test image is read.

    python bench/grad_clipping.py                                   # digits_lt, bib mbib bsce
    python bench/grad_clipping.py --methods bib,mbib --beta 5 --seeds 0,1,2
    python bench/grad_clipping.py --lr 0.1                          # the CIFAR recipe's rate
    python bench/grad_clipping.py --beta 2 --unclipped-only         # where divergence starts
    python bench/grad_clipping.py --params my_params.yaml           # e.g. after a preset
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import pipeline.engine.loop as loop
from pipeline.data import make_loader
from pipeline.engine import NonFiniteError, train
from pipeline.methods import build_method
from stages.configs import data_source, train_config
from stages.params import Params, load_params
from stages.prepare import draw_splits


@dataclass(frozen=True)
class RunStats:
    """What one training run did to its gradients and losses.

    Attributes:
        norms: the global gradient norm of every step, before any clipping.
        losses: the loss of every step.
        diverged: where training stopped on a non-finite value, or "".
        best_val_acc: the best val accuracy over the epochs run (NaN if none finished).
    """

    norms: np.ndarray
    losses: np.ndarray
    diverged: str
    best_val_acc: float


def train_once(params: Params, method_name: str, seed: int, max_grad_norm: float | None,
               options: dict[str, Any], lr: float | None) -> RunStats:
    """Train ``methods.<method_name>`` once, recording every step's loss and gradient norm."""
    entry = params.method(method_name)
    recipe = params.train_for(method_name).model_copy(update={"max_grad_norm": max_grad_norm})
    if lr is not None:
        recipe = recipe.model_copy(update={"optim": recipe.optim.model_copy(update={"lr": lr})})
    data = params.data
    source = data_source(data)
    splits = draw_splits(source, data)
    device = torch.device("cpu")
    method = build_method(entry.kind, backbone=recipe.backbone, in_channels=source.channels,
                          class_counts=splits.class_counts.tolist(),
                          options={**entry.options, **options}, seed=seed)
    common = {"batch_size": recipe.batch_size, "seed": seed, "device": device}
    train_loader = make_loader(source, splits.train, train=True, sampling=method.sampling,
                               augment=recipe.augment, **common)
    val_loader = make_loader(source, splits.val, train=False, **common)
    norms: list[float] = []
    losses: list[float] = []
    original = loop.check_finite

    def recording(loss: torch.Tensor, norm: torch.Tensor, *args: Any) -> None:
        losses.append(float(loss.detach()))
        norms.append(float(norm))
        original(loss, norm, *args)

    loop.check_finite = recording
    diverged, best = "", math.nan
    try:
        result = train(method, train_loader, val_loader, train_config(recipe, seed),
                       device=device)
        best = result.best_val_acc
    except NonFiniteError as error:
        diverged = str(error).split(";")[0]
    finally:
        loop.check_finite = original
    return RunStats(np.array(norms), np.array(losses), diverged, best)


def summary(stats: RunStats, clip: float) -> str:
    """One table row: max / p99 norm, share of steps above ``clip``, max loss, outcome."""
    finite = stats.norms[np.isfinite(stats.norms)]
    above = float(np.mean(finite > clip)) if finite.size else math.nan
    outcome = stats.diverged or f"val {stats.best_val_acc:.3f}"
    return (f"{np.max(finite):>9.3g}{np.percentile(finite, 99):>9.3g}{above:>8.1%}"
            f"{np.nanmax(stats.losses):>10.3g}  {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--methods", default="bib,mbib,bsce")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--clip", type=float, default=5.0,
                        help="the max_grad_norm of the clipped runs")
    parser.add_argument("--unclipped-only", action="store_true",
                        help="skip the clipped runs")
    parser.add_argument("--clipped-only", action="store_true",
                        help="skip the unclipped runs")
    parser.add_argument("--beta", type=float, default=None,
                        help="beta of bib / mbib (default: params.yaml's)")
    parser.add_argument("--lr", type=float, default=None, help="override train.optim.lr")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params(args.params)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    print(f"{params.data.dataset}, {params.train.epochs} epochs, lr "
          f"{args.lr or params.train.optim.lr}; norms before clipping")
    print(f"{'method':<8}{'clip':>6}{'seed':>5}{'max |g|':>9}{'p99 |g|':>9}"
          f"{'>clip':>8}{'max loss':>10}  outcome")
    for method_name in args.methods.split(","):
        kind = params.method(method_name).kind
        options = {"beta": args.beta} if args.beta is not None and kind in ("bib", "mbib") else {}
        for seed in seeds:
            clips = [None, args.clip]
            clips = clips[:1] if args.unclipped_only else clips[1:] if args.clipped_only else clips
            for clip in clips:
                stats = train_once(params, method_name, seed, clip, options, args.lr)
                label = "none" if clip is None else f"{clip:g}"
                print(f"{method_name:<8}{label:>6}{seed:>5}{summary(stats, args.clip)}",
                      flush=True)


if __name__ == "__main__":
    main()
