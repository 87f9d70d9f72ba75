"""Stage 2 over the memory budget: a classifier fitted on a bank read in windows vs in memory.

One seeded long-tailed bank of N x D float32 train features (plus val) is written to a
temporary folder. Each side then runs in a fresh process, alternating, so that its peak
resident memory is its own: `fit_classifier` (balanced softmax, the stage's default recipe)
on rows loaded whole (`memory.budget_mb: null`) and on rows read from the bank under a budget
of a quarter of the bank (`features.bank.rows.BankRows`, windows of a quarter of the budget).
Reported: seconds per fit, peak RSS, the peak above the process's RSS before the fit (the imports of
torch alone hold several hundred MB), and whether the two classifiers are the same bytes.

    python bench/stage2_memory.py                    # 200k x 256 (205 MB of features)
    python bench/stage2_memory.py --rows 50000 --epochs 1
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 100
HERE = Path(__file__).resolve().parent


def write_bank(path: Path, rows: int, dim: int, seed: int = 0) -> None:
    """A bank whose train labels follow an exponential profile (imbalance 100) over CLASSES."""
    from features.bank import BankMeta, BankWriter

    rng = np.random.default_rng(seed)
    weights = 100.0 ** (-np.arange(CLASSES) / (CLASSES - 1))
    labels = rng.choice(CLASSES, size=rows, p=weights / weights.sum())
    labels[: CLASSES] = np.arange(CLASSES)  # every class has a training row
    centres = rng.standard_normal((CLASSES, dim)).astype(np.float32)
    meta = BankMeta(method="bench", backbone="none", dataset="synthetic", num_classes=CLASSES,
                    feature_dim=dim, seed=seed, params_digest="0" * 64,
                    checkpoint_sha256="0" * 64,
                    class_counts=np.bincount(labels, minlength=CLASSES).astype(np.int64),
                    tailbank_version="bench")
    val_labels = np.repeat(np.arange(CLASSES), 20)
    with BankWriter(path, meta) as writer:
        for split, split_labels in (("train", labels), ("val", val_labels)):
            for start in range(0, len(split_labels), 65536):
                y = split_labels[start : start + 65536]
                noise = rng.standard_normal((len(y), dim), dtype=np.float32)
                writer.append(split, features=centres[y] + 2.0 * noise, labels=y,
                              index=np.arange(start, start + len(y)))


def child(bank_path: Path, budget_mb: float | None, epochs: int) -> dict[str, Any]:
    """Fit in this process; returns seconds, peak RSS and the fitted state's digest."""
    import torch

    from features.bank import Bank
    from features.bank.rows import BankRows, load_rows
    from features.classifiers import fit_classifier
    from features.configs import ProbeConfig

    torch.set_num_threads(1)
    _warm_up()
    floor_mb = current_rss_mb()  # interpreter, torch, its optimiser modules: no bank rows yet
    budget = None if budget_mb is None else int(budget_mb * 2**20)
    start = time.perf_counter()
    with Bank.open(bank_path) as bank:
        rows = load_rows(bank, [("train", "features"), ("val", "features")], budget)
        fitted = fit_classifier(
            "balanced_softmax", train_x=rows["train", "features"], train_y=bank.labels("train"),
            val_x=rows["val", "features"], val_y=bank.labels("val"),
            class_counts=bank.meta.class_counts,
            config=ProbeConfig(epochs=epochs, batch_size=512, lr=0.1, seed=0),
        )
        streamed = isinstance(rows["train", "features"], BankRows)
    seconds = time.perf_counter() - start
    buffer = io.BytesIO()
    torch.save(fitted.model.state_dict(), buffer)
    peak_mb = peak_rss_mb()
    return {"seconds": seconds, "peak_rss_mb": peak_mb, "added_rss_mb": peak_mb - floor_mb,
            "digest": hashlib.sha256(buffer.getvalue()).hexdigest(), "streamed": streamed}


def _warm_up() -> None:
    """A fit on 200 random rows, so the modules the first fit imports (torch.optim pulls in
    ~150 MB of them) are in the floor, not in the figure."""
    from features.classifiers import fit_classifier
    from features.configs import ProbeConfig

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 8), dtype=np.float32), np.arange(200) % 2
    fit_classifier("balanced_softmax", train_x=x, train_y=y, val_x=x, val_y=y,
                   class_counts=np.bincount(y), config=ProbeConfig(epochs=1))


def peak_rss_mb() -> float:
    """VmHWM of this process image. Not getrusage's ru_maxrss: Linux keeps that high-water
    mark across fork and exec, so a child of a large parent would report the parent's peak."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(
    rows: int = 200_000, dim: int = 256, epochs: int = 2, repeats: int = 2
) -> dict[str, Any]:
    """Both sides in fresh processes, alternating; best time and largest RSS of each."""
    with tempfile.TemporaryDirectory() as folder:
        bank = Path(folder) / "bench.h5"
        write_bank(bank, rows, dim)
        bank_mb = 4 * dim * (rows + 20 * CLASSES) / 2**20
        budget_mb = bank_mb / 4
        runs: dict[str, list[dict[str, Any]]] = {"memory": [], "streamed": []}
        for _ in range(repeats):
            for side, budget in (("memory", None), ("streamed", budget_mb)):
                runs[side].append(_spawn(bank, budget, epochs))
    best = {side: min(r["seconds"] for r in result) for side, result in runs.items()}
    peak = {side: max(r["peak_rss_mb"] for r in result) for side, result in runs.items()}
    added = {side: max(r["added_rss_mb"] for r in result) for side, result in runs.items()}
    digests = {r["digest"] for result in runs.values() for r in result}
    return {"rows": rows, "dim": dim, "epochs": epochs, "bank_mb": bank_mb,
            "budget_mb": budget_mb, "seconds": best, "peak_rss_mb": peak,
            "added_rss_mb": added,
            "identical": len(digests) == 1,
            "streamed_used_bank_rows": all(r["streamed"] for r in runs["streamed"])}


def _spawn(bank: Path, budget_mb: float | None, epochs: int) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(bank),
               "--epochs", str(epochs)]
    if budget_mb is not None:
        command += ["--budget-mb", str(budget_mb)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--budget-mb", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.budget_mb, args.epochs)))
        return
    print(json.dumps(measure(args.rows, args.dim, args.epochs, args.repeats), indent=2))


if __name__ == "__main__":
    main()
