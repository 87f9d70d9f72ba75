"""DLSA at scale: the whole cascade vs its bare parts on a large synthetic bank, side by side.

Ours is `fit_cascade` (F flow filters, each trained on the rows the previous ones leave, its
val pass per epoch, routing, the cluster prior and the cluster-aided classifier whose latent
z comes from the frozen flow). The bare parts are what the cascade cannot do without, on the
same numbers of rows: per filter, a bare nflows MAF (the same two MADE blocks) trained by
plain MLE for the same epochs and batch on as many rows as that filter saw, and a bare
``nn.Linear`` trained with cross-entropy for the classifier's epochs on as many rows as the
filter routed. Each side runs in a fresh process (one torch thread unless told), which also
gives its peak memory (VmHWM) on its own.

    python bench/dlsa_scale.py                    # 100k x 512, 100 classes, 2 + 2 epochs
    python bench/dlsa_scale.py --rows 20000 --dim 64 --profile   # and where our time goes
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flow_throughput import bare_maf, synthetic_bank, train_bare_maf  # noqa: E402
from stage2_memory import current_rss_mb, peak_rss_mb  # noqa: E402

from features.configs import CascadeConfig, FlowTrainConfig  # noqa: E402
from features.dlsa.cascade import fit_cascade  # noqa: E402


def cascade_config(args: argparse.Namespace) -> CascadeConfig:
    """The cascade both sides are sized by (library defaults but epochs and clusters)."""
    flow = FlowTrainConfig(num_clusters=args.classes // 2, epochs=args.flow_epochs,
                           batch_size=args.flow_batch)
    return CascadeConfig(flow=flow, classifier_epochs=args.classifier_epochs,
                         num_filters=args.filters)


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Fit the cascade; its seconds, peak memory and per-filter row counts."""
    train_x, train_y, val_x, val_y, counts = synthetic_bank(args.rows, args.dim, args.classes, 0)
    config = cascade_config(args)
    rss_before = current_rss_mb()
    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    cascade, left_train, _ = fit_cascade(train_x, train_y, val_x, val_y, counts, config)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    seen = [len(rows) for rows in left_train[:-1]]  # rows filter f trained on
    routed = [len(left_train[f]) - len(left_train[f + 1]) for f in range(len(seen))]
    result = {"seconds": seconds, "peak_mb": peak_rss_mb() - rss_before,
              "data_mb": train_x.nbytes / 2**20, "filter_rows": seen, "routed_rows": routed}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        result["profile"] = text.getvalue()
    return result


def run_bare(args: argparse.Namespace, filter_rows: list[int],
             routed_rows: list[int]) -> dict[str, Any]:
    """The bare parts on the same row counts: MAF MLE epochs, then linear classifier epochs."""
    train_x, train_y, *_ = synthetic_bank(args.rows, args.dim, args.classes, 0)
    config = cascade_config(args)
    standardised = (train_x - train_x.mean(0)) / np.maximum(train_x.std(0), 1e-6)
    x = torch.from_numpy(standardised.astype(np.float32))
    y = torch.from_numpy(train_y)
    rss_before = current_rss_mb()
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for seen, routed in zip(filter_rows, routed_rows, strict=True):
        _bare_flow(x[:seen], config.flow, generator)
        _bare_linear(x[:routed], y[:routed], args.classes, config, generator)
    return {"seconds": time.perf_counter() - start, "peak_mb": peak_rss_mb() - rss_before}


def _bare_flow(rows: torch.Tensor, config: FlowTrainConfig, generator: torch.Generator) -> None:
    flow = bare_maf(rows.shape[1])
    optimizer = torch.optim.SGD(flow.parameters(), lr=1e-3)
    train_bare_maf(flow, optimizer, rows, config.epochs, config.batch_size, generator)


def _bare_linear(rows: torch.Tensor, labels: torch.Tensor, classes: int, config: CascadeConfig,
                 generator: torch.Generator) -> None:
    head = torch.nn.Linear(rows.shape[1], classes)
    optimizer = torch.optim.SGD(head.parameters(), lr=config.classifier_lr)
    for _ in range(config.classifier_epochs):
        order = torch.randperm(len(rows), generator=generator)
        for first in range(0, len(order), config.classifier_batch_size):
            chosen = order[first:first + config.classifier_batch_size]
            loss = torch.nn.functional.cross_entropy(head(rows[chosen]), labels[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Ours, then the bare parts sized by ours, each in its own process; the ratio."""
    ours = _spawn(args, "ours")
    bare = _spawn(args, "bare", filter_rows=ours["filter_rows"], routed_rows=ours["routed_rows"])
    return {"rows": args.rows, "dim": args.dim, "classes": args.classes,
            "filters": args.filters, "flow_epochs": args.flow_epochs,
            "classifier_epochs": args.classifier_epochs, "threads": args.threads,
            "ours": ours, "bare": bare, "ratio": ours["seconds"] / bare["seconds"]}


def _spawn(args: argparse.Namespace, side: str, **sizes: list[int]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", side,
               *_forwarded(args), "--sizes", json.dumps(sizes)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{side} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _forwarded(args: argparse.Namespace) -> list[str]:
    names = ("rows", "dim", "classes", "filters", "flow_epochs", "classifier_epochs",
             "flow_batch", "threads")
    flags = [f"--{name.replace('_', '-')}={getattr(args, name)}" for name in names]
    return flags + (["--profile"] if args.profile else [])


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--filters", type=int, default=3)
    parser.add_argument("--flow-epochs", type=int, default=2)
    parser.add_argument("--classifier-epochs", type=int, default=2)
    parser.add_argument("--flow-batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print our top 25 functions")
    parser.add_argument("--child", choices=("ours", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _warm_up(threads: int) -> None:
    """One thread count, and torch.optim's first use (it imports torch._dynamo, about 2 s)
    paid before either side's clock starts."""
    torch.set_num_threads(threads)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).zero_grad()


def main() -> None:
    args = parse()
    if args.child:
        _warm_up(args.threads)
    if args.child == "ours":
        print(json.dumps(run_ours(args)))
    elif args.child == "bare":
        print(json.dumps(run_bare(args, **json.loads(args.sizes))))
    else:
        result = measure(args)
        profile = result["ours"].pop("profile", None)
        print(json.dumps(result, indent=2))
        if profile:
            print(profile)


if __name__ == "__main__":
    main()
