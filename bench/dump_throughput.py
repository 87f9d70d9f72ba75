"""Dump throughput: tailbank's `dump` path vs a bare `torch.no_grad()` forward loop.

Both run the same model over the same loader (un-augmented, same batch size) in one process,
alternating, best of ``--repeats``; the ratio is ours / bare in images per second (goal >= 0.9).
"ours" is the dump stage's own code: embed (features, logits, extra views), copy to host and
stream into an HDF5 bank that is renamed into place.

    python bench/dump_throughput.py                                   # digits_lt, bundled
    python bench/dump_throughput.py --dataset mnist_lt --root ../shared/data
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.devices import resolve_device
from features.bank import BankMeta, BankWriter
from pipeline.data import load_source, make_loader, make_splits
from pipeline.engine import set_seed
from pipeline.methods import build_method
from stages.dump import write_batch


def measure(
    dataset: str = "digits_lt",
    root: str = "data/raw",
    backbone: str = "resnet32",
    batch_size: int = 512,
    repeats: int = 3,
    max_per_class: int | None = None,
) -> dict[str, Any]:
    """Times the dump path and a bare forward loop over the same un-augmented train split.

    Args:
        dataset: Dataset name of `pipeline.data.load_source`.
        root: Where the dataset lives (unused by digits_lt).
        backbone: Backbone of the `ce` method whose features are dumped.
        batch_size: Images per batch of both loops.
        repeats: Alternating rounds (bare, ours); the best of each side counts.
        max_per_class: Cap on training images per class (None = all).

    Returns:
        Sizes, the best seconds and images/s of each side and the ratio ours / bare.
    """
    device = resolve_device()
    set_seed(0)
    source = load_source(dataset, root)
    splits = make_splits(
        source,
        imbalance_factor=1.0,
        val_per_class=10,
        test_per_class=40,
        max_per_class=max_per_class,
        seed=0,
    )
    loader = make_loader(source, splits.train, batch_size=batch_size, train=False, device=device)
    method = (
        build_method(
            "ce",
            backbone=backbone,
            in_channels=source.channels,
            class_counts=splits.class_counts.tolist(),
        )
        .to(device)
        .eval()
    )
    meta = BankMeta(
        method="ce",
        backbone=backbone,
        dataset=dataset,
        num_classes=source.num_classes,
        feature_dim=method.backbone.feature_dim,
        seed=0,
        params_digest="bench",
        checkpoint_sha256="bench",
        class_counts=splits.class_counts,
    )

    def bare() -> None:
        with torch.no_grad():
            for batch in loader.epoch(0):
                method.backbone(batch.images.to(device, non_blocking=True))
        sync(device)

    def ours() -> None:
        with tempfile.TemporaryDirectory() as folder:
            with BankWriter(Path(folder) / "bank.h5", meta) as bank:
                for batch in loader.epoch(0):
                    write_batch(bank, "train", method, batch, device)
        sync(device)

    bare()  # warm-up: allocator, kernels, page cache
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(repeats):
        for name, work in (("bare", bare), ("ours", ours)):
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    images = loader.num_samples
    best = {name: min(values) for name, values in times.items()}
    return {
        "dataset": dataset,
        "backbone": backbone,
        "batch_size": batch_size,
        "images": images,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "bare_s": best["bare"],
        "ours_s": best["ours"],
        "bare_images_per_s": images / best["bare"],
        "ours_images_per_s": images / best["ours"],
        "ratio": best["bare"] / best["ours"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits_lt")
    parser.add_argument("--root", default="data/raw")
    parser.add_argument("--backbone", default="resnet32")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-per-class", type=int, default=None)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(
        args.dataset, args.root, args.backbone, args.batch_size, args.repeats, args.max_per_class
    )
    print(
        f"dump throughput, {args.dataset} train ({result['images']} images), {args.backbone}, "
        f"batch {args.batch_size}, {result['device']}, torch threads {result['threads']}"
    )
    print(f"{'path':<8}{'images/s':>12}{'best s':>10}")
    for name in ("bare", "ours"):
        print(f"{name:<8}{result[f'{name}_images_per_s']:>12.0f}{result[f'{name}_s']:>10.3f}")
    print(f"ratio ours/bare: {result['ratio']:.3f} (goal >= 0.9)")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
