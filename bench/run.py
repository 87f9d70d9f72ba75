"""The bench suite of issue 7: every row a ratio measured side by side in one run.

    python bench/run.py                         # every row, full sizes, 1 torch thread
    python bench/run.py --quick                 # small sizes (a minute or two)
    python bench/run.py --rows dump,train       # some rows only
    python bench/run.py --write                 # also rewrite the table in bench/RESULTS.md
    python bench/run.py --rows bank --profile   # cProfile of each row's run, top functions

Rows: cli (`tailbank check` and `--help` wall time beside a bare interpreter start), dump
(images/s of the dump stage vs a bare no_grad forward loop), train (seconds per epoch of the
engine's loop vs a minimal SGD loop), flows (DLSA flow-filter training vs a bare nflows MAF,
and cascade routing rows/s), dlsa (the whole cascade on a 100k x 512 synthetic bank vs its
bare parts: nflows MLE and linear classifier epochs on as many rows), knn (faiss kNN purity
vs scikit-learn brute force), bank (HDF5 bank write/read vs np.save/np.load), stage2 (a
classifier fitted on a bank read in windows under a budget of a quarter of it vs in memory:
time, peak memory, same bytes), dvc (no-op `dvc repro` on a reproduced tiny copy of the
default pipeline), warm (`dvc repro --force` of a tiny DAG with its stages started through
`tailbank warm` vs cold, same bytes). Each row's script
under bench/ runs on its own as well.

`--write` replaces only the block between the bench markers of RESULTS.md, so notes written
around it (profiles, explanations) survive a re-run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import bank_io
import cli_start
import dlsa_scale
import dump_throughput
import dvc_noop
import flow_throughput
import knn_purity
import stage2_memory
import torch
import train_overhead
import warm_start

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench:begin (written by bench/run.py --write) -->", "<!-- bench:end -->"
ROWS = ("cli", "dump", "train", "flows", "dlsa", "knn", "bank", "stage2", "dvc", "warm")


@dataclass(frozen=True)
class Row:
    """One line of the table.

    Attributes:
        name: What is measured.
        ours: tailbank's figure, with its unit.
        baseline: The bare figure, with its unit.
        ratio: The ratio the goal is about ("" when the row is informational).
        goal: The goal of the issue ("" when none).
        met: "yes", "no" or "" (no goal).
        setup: Sizes and settings of the measurement.
    """

    name: str
    ours: str
    baseline: str
    ratio: str
    goal: str
    met: str
    setup: str


def verdict(ok: bool) -> str:
    return "yes" if ok else "no"


def dump_rows(args: argparse.Namespace) -> list[Row]:
    r = dump_throughput.measure(
        dataset=args.dataset,
        root=args.root,
        backbone="resnet32",
        batch_size=512,
        repeats=2 if args.quick else 5,
        max_per_class=args.max_per_class,
    )
    setup = (
        f"{r['dataset']} train, {r['images']} images, {r['backbone']}, batch {r['batch_size']}, "
        f"{r['device']}, best of {2 if args.quick else 5} alternating rounds"
    )
    return [
        Row(
            "dump: images/s, ours / bare forward",
            f"{r['ours_images_per_s']:.0f} img/s",
            f"{r['bare_images_per_s']:.0f} img/s",
            f"{r['ratio']:.2f}",
            ">= 0.9",
            verdict(r["ratio"] >= 0.9),
            setup,
        )
    ]


def train_rows(args: argparse.Namespace) -> list[Row]:
    repeats = 2 if args.quick else 5
    r = train_overhead.measure(
        dataset=args.dataset,
        root=args.root,
        backbone="resnet20",
        batch_size=64,
        epochs=1 if args.quick else 2,
        repeats=repeats,
        max_per_class=args.max_per_class,
    )
    setup = (
        f"ce, {r['backbone']}, {r['dataset']} train {r['train_images']} images "
        f"({r['steps_per_epoch']} steps of {r['batch_size']}, crop), val {r['val_images']}, "
        f"{r['epochs']} epoch(s) per run, median of {repeats} interleaved runs, {r['device']}"
    )
    rows = [
        Row(
            "train: s/epoch, engine.train / bare loop",
            f"{r['ours_epoch_s']:.3f} s",
            f"{r['bare_epoch_s']:.3f} s",
            f"{r['ratio']:.2f}",
            "<= 1.10",
            verdict(r["ratio"] <= 1.10),
            setup + "; no checkpoint",
        )
    ]
    if "ratio_checkpoint" in r:
        rows.append(
            Row(
                "train: s/epoch, engine.train + checkpoint / bare",
                f"{r['ours_checkpoint_epoch_s']:.3f} s",
                f"{r['bare_epoch_s']:.3f} s",
                f"{r['ratio_checkpoint']:.2f}",
                "<= 1.10",
                verdict(r["ratio_checkpoint"] <= 1.10),
                setup + "; atomic checkpoint every epoch, as the pretrain stage",
            )
        )
    return rows


def flow_rows(args: argparse.Namespace) -> list[Row]:
    sizes = {"rows": 5_000, "dim": 32, "epochs": 1} if args.quick else {}
    repeats = 1 if args.quick else 3
    r = flow_throughput.measure(**sizes, repeats=repeats)
    setup = (
        f"{r['bank']} {r['rows']} x {r['dim']}, {r['classes']} classes, K {r['num_clusters']}, "
        f"batch {r['batch_size']}, {r['epochs']} epochs per run, median of {repeats}, "
        f"{r['device']}"
    )
    return [
        Row(
            "flows: epoch time, flow filter / bare MAF",
            f"{r['ours_epoch_s']:.2f} s",
            f"{r['bare_epoch_s']:.2f} s",
            f"{r['ratio']:.2f}",
            "<= 1.3",
            verdict(r["ratio"] <= 1.3),
            setup,
        ),
        Row(
            "flows: cascade routing",
            f"{r['routing_rows_per_s']:.0f} rows/s",
            "",
            "",
            "",
            "",
            f"Cascade.route of 3 filters over the {r['rows']} training rows",
        ),
    ]


def cli_rows(args: argparse.Namespace) -> list[Row]:
    repeats = 3 if args.quick else 5
    r = cli_start.measure(repeats)
    setup = (f"fresh process each, median of {repeats} interleaved; the repository's params.yaml "
             f"and dvc.yaml; heavy libraries `check` imports: "
             f"{', '.join(r['heavy_imports']) or 'none'}")
    return [
        Row("cli: `tailbank check` wall time (vs a bare python start)", f"{r['check_s']:.2f} s",
            f"{r['python_s']:.2f} s", f"{r['check_s'] / r['python_s']:.1f}x", "< 1 s, no torch",
            verdict(r["check_s"] < 1 and not r["heavy_imports"]), setup),
        Row("cli: `tailbank --help` wall time (vs a bare python start)", f"{r['help_s']:.2f} s",
            f"{r['python_s']:.2f} s", f"{r['help_s'] / r['python_s']:.1f}x", "< 1 s",
            verdict(r["help_s"] < 1), setup),
    ]


def dlsa_rows(args: argparse.Namespace) -> list[Row]:
    sizes = ["--rows=20000", "--dim=64"] if args.quick else []
    r = dlsa_scale.measure(dlsa_scale.parse([*sizes, f"--threads={args.threads}"]))
    ours, bare = r["ours"], r["bare"]
    setup = (f"synthetic {r['rows']} x {r['dim']}, {r['classes']} classes (IF 100), "
             f"{r['filters']} filters, {r['flow_epochs']} flow + {r['classifier_epochs']} "
             f"classifier epochs, each side in a fresh process, {r['threads']} thread(s); "
             f"filters trained on {ours['filter_rows']} rows, routed {ours['routed_rows']}; "
             f"bare = nflows MAF MLE + nn.Linear CE on as many rows")
    return [
        Row("dlsa: whole cascade s / its bare parts", f"{ours['seconds']:.1f} s",
            f"{bare['seconds']:.1f} s", f"{r['ratio']:.2f}", "<= 1.5",
            verdict(r["ratio"] <= 1.5), setup),
        Row("dlsa: peak memory added by the fit", f"{ours['peak_mb']:.0f} MB",
            f"{bare['peak_mb']:.0f} MB", f"{ours['peak_mb'] / max(bare['peak_mb'], 1):.2f}", "",
            "", f"VmHWM minus RSS after the data were made; the train features are "
                f"{ours['data_mb']:.0f} MB"),
    ]


def ivf_row(args: argparse.Namespace) -> Row:
    sizes = {"n_train": 20_000, "n_query": 2_000, "dim": 64} if args.quick else {}
    r = knn_purity.measure_ivf(**sizes, threads=args.threads)
    setup = (f"{r['n_query']} queries x {r['n_train']} rows, D {r['dim']}, k {r['k']}, "
             f"clustered noise {r['noise']} (test purity {r['mean_purity']:.2f}), IVF nlist "
             f"{r['nlist']}, nprobe {r['nprobe']} chosen by measured recall "
             f"({r['calibration_recall']:.3f} on {r['calibration_queries']} queries); "
             f"recall@{r['k']} on every query vs exact faiss: {r['recall']:.4f}; "
             f"{r['threads']} thread(s) each")
    target = r["min_recall"]
    return Row(f"knn: IVF, sklearn brute s / ours s (recall@{r['k']} >= {target})",
               f"{r['ivf_s']:.2f} s", f"{r['sklearn_s']:.2f} s", f"{r['ratio']:.1f}x",
               f">= 10x, recall >= {target}", verdict(r["ratio"] >= 10 and r["recall"] >= target),
               setup)


def knn_rows(args: argparse.Namespace) -> list[Row]:
    sizes = (10_000, 2_000, 64) if args.quick else (50_000, 10_000, 256)
    r = knn_purity.measure(*sizes, k=10, threads=args.threads)
    setup = (
        f"{r['n_query']} queries x {r['n_train']} rows, D {r['dim']}, k {r['k']}, cosine, exact, "
        f"{r['threads']} thread(s) each; purity arrays equal: {r['equal']}, "
        f"mean purity {r['mean_purity']:.4f}"
    )
    return [
        Row(
            "knn: purity, sklearn s / faiss s",
            f"{r['faiss_s']:.2f} s",
            f"{r['sklearn_s']:.2f} s",
            f"{r['ratio']:.1f}x",
            ">= 10x, equal",
            verdict(r["ratio"] >= 10 and r["equal"]),
            setup,
        ),
        ivf_row(args),
    ]


def bank_rows(args: argparse.Namespace) -> list[Row]:
    rows, dim = (20_000, 64) if args.quick else (200_000, 256)
    repeats = 2 if args.quick else 3
    r = bank_io.measure(rows, dim, repeats=repeats)
    setup = (
        f"{r['rows']} x {r['dim']} float32 + labels + index ({r['arrays_mb']:.0f} MB), "
        f"best of {repeats}, temporary folder"
    )
    return [
        Row(
            "bank write: MB/s, BankWriter / np.save",
            f"{r['write_ours_mb_s']:.0f} MB/s",
            f"{r['write_numpy_mb_s']:.0f} MB/s",
            f"{r['write_ratio']:.2f}",
            ">= 0.7",
            verdict(r["write_ratio"] >= 0.7),
            setup + f", appends of {r['append_rows']} rows, both sides fsync",
        ),
        Row(
            "bank read: MB/s, Bank.features / np.load",
            f"{r['read_ours_mb_s']:.0f} MB/s",
            f"{r['read_numpy_mb_s']:.0f} MB/s",
            f"{r['read_ratio']:.2f}",
            ">= 0.7",
            verdict(r["read_ratio"] >= 0.7),
            setup + ", page cache warm, every chunk verified against its XXH3 digest while "
            "read (schema 3), Bank.open (validation) not timed",
        ),
        Row(
            "bank read incl. Bank.open validation",
            f"{r['features_mb'] / r['read_open_read_s']:.0f} MB/s",
            f"{r['read_numpy_mb_s']:.0f} MB/s",
            f"{r['read_open_ratio']:.2f}",
            "",
            "",
            f"Bank.open alone: {r['read_open_s']:.3f} s (metadata, shapes and the digest "
            "tables; chunks are verified as they are read)",
        ),
    ]


def stage2_rows(args: argparse.Namespace) -> list[Row]:
    rows, epochs = (20_000, 1) if args.quick else (200_000, 2)
    r = stage2_memory.measure(rows, 256, epochs, repeats=1 if args.quick else 2)
    setup = (
        f"balanced_softmax fit, {r['rows']} x {r['dim']} train rows ({r['bank_mb']:.0f} MB), "
        f"{r['epochs']} epoch(s), batch 512, budget {r['budget_mb']:.0f} MB (a quarter of the "
        f"bank), each side in a fresh process, best of {2 if not args.quick else 1}; fitted "
        f"classifiers identical: {r['identical']}"
    )
    memory, streamed = r["seconds"]["memory"], r["seconds"]["streamed"]
    added = r["added_rss_mb"]
    return [
        Row(
            "stage 2 over budget: s per fit, bank in windows / in memory",
            f"{streamed:.2f} s",
            f"{memory:.2f} s",
            f"{streamed / memory:.2f}",
            "same bytes",
            verdict(r["identical"] and r["streamed_used_bank_rows"]),
            setup,
        ),
        Row(
            "stage 2 over budget: peak memory added by the fit",
            f"{added['streamed']:.0f} MB",
            f"{added['memory']:.0f} MB",
            f"{added['streamed'] / added['memory']:.2f}",
            "",
            "",
            "peak RSS minus the RSS after imports and a warm-up fit (torch.optim modules)",
        ),
    ]


def dvc_rows(args: argparse.Namespace) -> list[Row]:
    repeats = 3
    r = dvc_noop.measure(["ce"] if args.quick else None, repeats=repeats)
    setup = (
        f"tiny copy of the default DAG, {r['stages']} stages ({r['methods']} method(s)), "
        f"median of {repeats}; baseline = `dvc status`"
    )
    return [
        Row(
            "dvc: no-op `dvc repro` wall time",
            f"{r['repro_s']:.2f} s",
            f"{r['status_s']:.2f} s",
            f"{r['ratio']:.2f}",
            "< 5 s",
            verdict(r["repro_s"] < 5),
            setup,
        )
    ]


def warm_rows(args: argparse.Namespace) -> list[Row]:
    repeats = 1 if args.quick else 2
    r = warm_start.measure(["ce"], repeats=repeats)
    setup = (f"tiny copy of the default DAG, the ce branch: {r['stages']} stages; median of "
             f"{repeats} forced repros each, alternating; the server's own start "
             f"{r['server_start_s']:.1f} s, once; outputs identical to the first repro's: "
             f"{r['same_bytes']}")
    return [Row("warm: `dvc repro --force` with `tailbank warm` (vs cold starts)",
                f"{r['warm_s']:.1f} s", f"{r['cold_s']:.1f} s", f"{r['ratio']:.2f}",
                "<= 0.5, same bytes", verdict(r["ratio"] <= 0.5 and r["same_bytes"]), setup)]


MEASURES: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "cli": cli_rows,
    "dlsa": dlsa_rows,
    "dump": dump_rows,
    "train": train_rows,
    "flows": flow_rows,
    "knn": knn_rows,
    "bank": bank_rows,
    "stage2": stage2_rows,
    "dvc": dvc_rows,
    "warm": warm_rows,
}


def machine() -> str:
    """CPU model, cores, memory and library versions, in one line."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split()[1])
        memory = f", {total_kb / 2**20:.0f} GiB RAM"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    libraries = ", ".join(
        f"{name} {version(name)}"
        for name in ("h5py", "xxhash", "faiss-cpu", "nflows", "scikit-learn", "dvc")
    )
    return (
        f"{cpu}, {cores} cores{memory}, {gpu}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, {libraries}"
    )


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    header = "| row | ours | baseline | ratio | goal | met? |\n|---|---:|---:|---:|---|---|\n"
    return header + "".join(
        f"| {r.name} | {r.ours} | {r.baseline} | {r.ratio} | {r.goal} | {r.met} |\n" for r in rows
    )


def report(rows: list[Row], args: argparse.Namespace, load_before: float) -> str:
    """The generated block of RESULTS.md: table, setups, the machine and its load (the
    1-minute load average before and after the rows: anything else running shows there)."""
    setups = "".join(f"- **{r.name}**: {r.setup}\n" for r in rows)
    return (
        f"{table(rows)}\n"
        f"Measured on: {machine()}. torch threads {args.threads}"
        f"{' (quick sizes)' if args.quick else ''}; 1-minute load average "
        f"{load_before:.2f} before the rows, {os.getloadavg()[0]:.2f} after.\n\n"
        f"Setups:\n\n{setups}"
    )


def write_results(block: str) -> None:
    """Replace the marked block of RESULTS.md (or create the file around it)."""
    marked = f"{BEGIN}\n{block}{END}\n"
    if RESULTS.is_file() and BEGIN in (text := RESULTS.read_text()) and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        RESULTS.write_text(before + marked + ("\n" + after if after else ""))
        return
    RESULTS.write_text(
        "# Bench results (issue 7)\n\nRegenerate with `python bench/run.py --write`; "
        "only the marked block is rewritten.\n\n" + marked
    )


def profiled(name: str, args: argparse.Namespace, top: int) -> list[Row]:
    """Run one row under cProfile and print its top functions by own and cumulative time."""
    profile = cProfile.Profile()
    rows = profile.runcall(MEASURES[name], args)
    for key in ("tottime", "cumulative"):
        stream = io.StringIO()
        pstats.Stats(profile, stream=stream).strip_dirs().sort_stats(key).print_stats(top)
        print(f"--- profile of row {name}, sorted by {key} ---")
        print(stream.getvalue().split("\n\n", 1)[-1].rstrip())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated of {ROWS}")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch / faiss / BLAS threads")
    parser.add_argument("--dataset", default="digits_lt", help="images of the dump/train rows")
    parser.add_argument("--root", default="data/raw", help="dataset root (not for digits_lt)")
    parser.add_argument("--max-per-class", type=int, default=None, help="cap of dump/train")
    parser.add_argument("--write", action="store_true", help="rewrite the table in RESULTS.md")
    parser.add_argument("--profile", action="store_true", help="cProfile each selected row")
    parser.add_argument("--top", type=int, default=25, help="functions per profile listing")
    args = parser.parse_args()
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    for name in names:
        print(f"running row {name} ...", file=sys.stderr, flush=True)
        rows += profiled(name, args, args.top) if args.profile else MEASURES[name](args)
    block = report(rows, args, load_before)
    print(block)
    if args.write:
        write_results(block)
        print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
