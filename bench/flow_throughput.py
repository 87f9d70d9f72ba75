"""DLSA flow-filter training vs a bare nflows MAF with plain MLE, side by side in one run.

Both train the same network (2 MADE blocks of one hidden layer of width D, reversed order
between them, a BatchNorm flow layer after each) with SGD on the same rows, batch size and
epochs. Ours adds what DLSA needs: the Gaussian-mixture base, the weighted MLE, the
balancedness and purity losses, the per-epoch val pass that chooses the epoch, and the
non-finite guard. The bare loop is ``nflows.flows.Flow(..., StandardNormal).log_prob``.
Also reports cascade inference (routing) throughput.

    python bench/flow_throughput.py                   # synthetic 20k x 64 bank, 100 classes
    python bench/flow_throughput.py --bank banks/ce.h5
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from nflows.distributions import StandardNormal
from nflows.flows import Flow
from nflows.transforms import (
    BatchNorm,
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    ReversePermutation,
)

from features.bank import Bank
from features.configs import CascadeConfig, FlowTrainConfig
from features.devices import torch_device
from features.dlsa.cascade import fit_cascade
from features.dlsa.training import train_filter


def synthetic_bank(rows: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, ...]:
    """Long-tailed (IF 100) Gaussian classes: train rows, labels, and a balanced val set."""
    rng = np.random.default_rng(seed)
    counts = np.maximum(1, (rows * _profile(classes) / _profile(classes).sum()).astype(int))
    centres = rng.normal(scale=2.0, size=(classes, dim))
    train_y = np.repeat(np.arange(classes), counts)
    train_x = centres[train_y] + rng.normal(size=(len(train_y), dim))
    val_y = np.repeat(np.arange(classes), 10)
    val_x = centres[val_y] + rng.normal(size=(len(val_y), dim))
    return (
        train_x.astype(np.float32),
        train_y,
        val_x.astype(np.float32),
        val_y,
        np.bincount(train_y, minlength=classes),
    )


def _profile(classes: int) -> np.ndarray:
    return 100.0 ** (-np.arange(classes) / max(1, classes - 1))


def bare_maf(dim: int) -> Flow:
    layers = []
    for block in range(2):
        if block:
            layers.append(ReversePermutation(features=dim))
        layers.append(
            MaskedAffineAutoregressiveTransform(
                features=dim, hidden_features=dim, num_blocks=0, use_residual_blocks=False
            )
        )
        layers.append(BatchNorm(features=dim))
    return Flow(CompositeTransform(layers), StandardNormal([dim]))


def time_bare(x: np.ndarray, config: FlowTrainConfig) -> float:
    """Seconds of ``config.epochs`` epochs of plain-MLE SGD on a bare nflows MAF.

    The rows are standardised first (untimed), as the filter does inside its flow: on raw
    features plain SGD at the DLSA learning rate diverges, and NaN arithmetic would time
    something else.
    """
    torch.manual_seed(config.seed)
    standardised = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-6)
    device = torch_device(config.device, "device")
    rows = torch.from_numpy(standardised.astype(np.float32)).to(device)
    flow = bare_maf(x.shape[1]).to(rows.device)
    optimizer = torch.optim.SGD(flow.parameters(), lr=config.lr, momentum=config.momentum)
    generator = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    loss = train_bare_maf(flow, optimizer, rows, config.epochs, config.batch_size, generator)
    _synchronise(rows.device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss):
        raise SystemExit("the bare MAF diverged; its time would not be comparable")
    return elapsed


def train_bare_maf(flow: Flow, optimizer: torch.optim.Optimizer, rows: torch.Tensor,
                   epochs: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Plain-MLE SGD epochs of a bare nflows flow on rows [N, D]; returns the last loss."""
    loss = torch.tensor(float("nan"))
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator).to(rows.device)
        for first in range(0, len(order), batch_size):
            batch = rows[order[first : first + batch_size]]
            if len(batch) < 2:
                continue
            loss = -flow.log_prob(batch).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return loss


def time_ours(data: tuple[np.ndarray, ...], config: FlowTrainConfig) -> float:
    """Seconds of ``train_filter`` (all DLSA losses and the val selection pass)."""
    train_x, train_y, val_x, val_y, counts = data
    start = time.perf_counter()
    train_filter(train_x, train_y, counts, val_x, val_y, config, name="bench")
    _synchronise(torch_device(config.device, "device"))
    return time.perf_counter() - start


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def routing_rate(data: tuple[np.ndarray, ...], config: FlowTrainConfig) -> float:
    """Rows per second of ``Cascade.route`` (3 filters) on the training rows."""
    train_x, train_y, val_x, val_y, counts = data
    cascade, _, _ = fit_cascade(
        train_x, train_y, val_x, val_y, counts, CascadeConfig(flow=config, classifier_epochs=1)
    )
    cascade.route(train_x[:256])  # warm-up
    start = time.perf_counter()
    cascade.route(train_x)
    return len(train_x) / (time.perf_counter() - start)


def load_data(bank: str | None, rows: int, dim: int, classes: int) -> tuple[np.ndarray, ...]:
    """Train/val rows, labels and class counts of a bank, or of the synthetic bank."""
    if not bank:
        return synthetic_bank(rows, dim, classes, seed=0)
    with Bank.open(bank) as opened:
        return (
            opened.features("train"),
            opened.labels("train"),
            opened.features("val"),
            opened.labels("val"),
            opened.meta.class_counts,
        )


def measure(
    bank: str | None = None,
    rows: int = 20_000,
    dim: int = 64,
    classes: int = 100,
    epochs: int = 3,
    batch_size: int = 1024,
    device: str = "cpu",
    repeats: int = 1,
) -> dict[str, Any]:
    """Times flow-filter training against a bare nflows MAF, and cascade routing.

    Args:
        bank: An HDF5 bank to read train/val rows from; None = the synthetic bank.
        rows: Synthetic training rows N (ignored with a bank).
        dim: Synthetic feature width D (ignored with a bank).
        classes: Synthetic classes C (ignored with a bank).
        epochs: Epochs of each timed training run.
        batch_size: Rows per SGD step of both sides.
        device: Torch device of both sides.
        repeats: Interleaved rounds (bare, ours); the median of each side counts.

    Returns:
        Sizes, median seconds of each side, samples/s, the ratio ours / bare and the cascade
        routing rate in rows/s.
    """
    data = load_data(bank, rows, dim, classes)
    rows, dim = data[0].shape
    config = FlowTrainConfig(
        num_clusters=max(2, len(data[4]) // 2), epochs=epochs, batch_size=batch_size, device=device
    )
    # one untimed round first: thread pools and allocator caches warm up for both alike
    time_bare(data[0], replace(config, epochs=1))
    time_ours(data, replace(config, epochs=1))
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(time_bare(data[0], config))
        ours.append(time_ours(data, config))
    bare_s, ours_s = float(np.median(bare)), float(np.median(ours))
    samples = rows * epochs
    return {
        "bank": bank or "synthetic",
        "rows": rows,
        "dim": dim,
        "classes": len(data[4]),
        "num_clusters": config.num_clusters,
        "epochs": epochs,
        "batch_size": batch_size,
        "device": device,
        "bare_s": bare_s,
        "ours_s": ours_s,
        "bare_epoch_s": bare_s / epochs,
        "ours_epoch_s": ours_s / epochs,
        "bare_samples_per_s": samples / bare_s,
        "ours_samples_per_s": samples / ours_s,
        "ratio": ours_s / bare_s,
        "routing_rows_per_s": routing_rate(data, config),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", default=None, help="an HDF5 bank (default: synthetic)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    result = measure(
        args.bank,
        args.rows,
        args.dim,
        args.classes,
        args.epochs,
        args.batch_size,
        args.device,
        args.repeats,
    )
    print(
        f"bank {result['bank']}: {result['rows']} x {result['dim']}, {result['classes']} "
        f"classes, K {result['num_clusters']}, batch {args.batch_size}, {args.epochs} epochs, "
        f"{args.device}"
    )
    print(f"{'':<28}{'seconds':>9}{'samples/s':>12}")
    print(
        f"{'bare nflows MAF, plain MLE':<28}{result['bare_s']:>9.2f}"
        f"{result['bare_samples_per_s']:>12.0f}"
    )
    print(
        f"{'tailbank flow filter':<28}{result['ours_s']:>9.2f}{result['ours_samples_per_s']:>12.0f}"
    )
    print(f"epoch-time ratio ours / bare: {result['ratio']:.2f} (goal <= 1.3)")
    print(f"cascade routing: {result['routing_rows_per_s']:.0f} rows/s")


if __name__ == "__main__":
    main()
