"""Training overhead: `pipeline.engine.train` (what `pretrain` runs) vs a minimal SGD loop.

Both train the same `ce` method (fresh, seeded weights for every run), over the same training
loader (same split, batch, sampling and augmentation), with the same SGD settings. Ours adds
what the stage needs: the per-iteration learning-rate schedule, the non-finite guard (one
device synchronisation per step), running loss/accuracy, the val pass and best-state copy after
every epoch, and optionally the atomic per-epoch checkpoint. The bare loop is
``loss = CE(model(x), y); zero_grad; backward; step``. Runs are interleaved (bare, ours,
ours + checkpoint) after one warm-up round, and the median seconds per epoch count; the ratio
is ours / bare (goal <= 1.10).

    python bench/train_overhead.py                                 # digits_lt, bundled
    python bench/train_overhead.py --dataset mnist_lt --root ../shared/data --max-per-class 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from core.devices import resolve_device
from pipeline.data import load_source, make_loader, make_splits
from pipeline.engine import OptimConfig, ScheduleConfig, TrainConfig, train
from pipeline.methods import Method, build_method

# The training recipe of params.yaml (train.optim, train.schedule).
OPTIM = OptimConfig(lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=False)
SCHEDULE = ScheduleConfig(kind="cosine", warmup_epochs=2)


def measure(
    dataset: str = "digits_lt",
    root: str = "data/raw",
    backbone: str = "resnet20",
    batch_size: int = 64,
    epochs: int = 2,
    repeats: int = 3,
    augment: str = "crop",
    max_per_class: int | None = None,
    checkpoint: bool = True,
) -> dict[str, Any]:
    """Seconds per epoch of the engine's loop and of a bare loop, side by side.

    Args:
        dataset: Dataset name of `pipeline.data.load_source`.
        root: Where the dataset lives (unused by digits_lt).
        backbone: Backbone of the `ce` method.
        batch_size: Images per training step of both loops.
        epochs: Epochs of each timed run.
        repeats: Interleaved rounds; the median of each side counts.
        augment: Augmentation of the shared training loader.
        max_per_class: Cap on training images per class (None = all).
        checkpoint: Also time the engine writing its per-epoch checkpoint (as the stage does).

    Returns:
        Sizes, median seconds per epoch of each side and the ratios ours / bare.
    """
    device = resolve_device()
    source = load_source(dataset, root)
    splits = make_splits(
        source,
        imbalance_factor=20,
        val_per_class=10,
        test_per_class=40,
        max_per_class=max_per_class,
        seed=0,
    )
    common = {"batch_size": batch_size, "seed": 0, "device": device}
    train_loader = make_loader(source, splits.train, train=True, augment=augment, **common)
    val_loader = make_loader(source, splits.val, train=False, **common)
    config = TrainConfig(epochs=epochs, optim=OPTIM, schedule=SCHEDULE, seed=0)

    def fresh() -> Method:
        return build_method(
            "ce",
            backbone=backbone,
            in_channels=source.channels,
            class_counts=splits.class_counts.tolist(),
            seed=0,
        ).to(device)

    def bare(method: Method) -> None:
        bare_loop(method, train_loader, epochs, device)

    def ours(method: Method) -> None:
        train(method, train_loader, val_loader, config, device=device)
        sync(device)

    def ours_checkpoint(method: Method) -> None:
        with tempfile.TemporaryDirectory() as folder:
            train(
                method,
                train_loader,
                val_loader,
                config,
                device=device,
                checkpoint_path=Path(folder) / "checkpoint.pt",
            )
        sync(device)

    sides: dict[str, Callable[[Method], None]] = {"bare": bare, "ours": ours}
    if checkpoint:
        sides["ours_checkpoint"] = ours_checkpoint
    for work in sides.values():  # warm-up: allocator, kernels, thread pools
        work(fresh())
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, work in sides.items():
            method = fresh()
            start = time.perf_counter()
            work(method)
            times[name].append((time.perf_counter() - start) / epochs)
    median = {name: float(np.median(values)) for name, values in times.items()}
    result: dict[str, Any] = {
        "dataset": dataset,
        "backbone": backbone,
        "batch_size": batch_size,
        "train_images": train_loader.num_samples,
        "steps_per_epoch": len(train_loader),
        "val_images": val_loader.num_samples,
        "epochs": epochs,
        "repeats": repeats,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "bare_epoch_s": median["bare"],
        "ours_epoch_s": median["ours"],
        "ratio": median["ours"] / median["bare"],
    }
    if checkpoint:
        result["ours_checkpoint_epoch_s"] = median["ours_checkpoint"]
        result["ratio_checkpoint"] = median["ours_checkpoint"] / median["bare"]
    return result


def bare_loop(method: Method, loader: Any, epochs: int, device: torch.device) -> None:
    """The minimal loop: constant-rate SGD with the recipe's settings, nothing else."""
    model = method.backbone
    model.train()
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=OPTIM.lr,
        momentum=OPTIM.momentum,
        weight_decay=OPTIM.weight_decay,
        nesterov=OPTIM.nesterov,
    )
    for epoch in range(epochs):
        for batch in loader.epoch(epoch):
            loss = F.cross_entropy(
                model(batch.images.to(device, non_blocking=True)),
                batch.labels.to(device, non_blocking=True),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    sync(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits_lt")
    parser.add_argument("--root", default="data/raw")
    parser.add_argument("--backbone", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--augment", default="crop")
    parser.add_argument("--max-per-class", type=int, default=None)
    parser.add_argument("--no-checkpoint", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(
        args.dataset,
        args.root,
        args.backbone,
        args.batch_size,
        args.epochs,
        args.repeats,
        args.augment,
        args.max_per_class,
        not args.no_checkpoint,
    )
    print(
        f"training overhead, {args.dataset} train ({result['train_images']} images, "
        f"{result['steps_per_epoch']} steps/epoch, val {result['val_images']}), "
        f"{args.backbone}, batch {args.batch_size}, {result['device']}, "
        f"torch threads {result['threads']}, median of {args.repeats}"
    )
    print(f"{'path':<30}{'s/epoch':>10}{'ratio':>8}")
    print(f"{'bare SGD loop':<30}{result['bare_epoch_s']:>10.3f}")
    print(f"{'engine.train':<30}{result['ours_epoch_s']:>10.3f}{result['ratio']:>8.3f}")
    if "ratio_checkpoint" in result:
        print(
            f"{'engine.train + checkpoint':<30}{result['ours_checkpoint_epoch_s']:>10.3f}"
            f"{result['ratio_checkpoint']:>8.3f}"
        )
    print("goal: ratio <= 1.10")


if __name__ == "__main__":
    main()
