"""Bank I/O: `BankWriter` / `Bank` (HDF5, per-chunk digests) vs `np.save` / `np.load` (.npy).

One seeded train split of N x D float32 features (with its int64 labels and index) is written
both ways into a temporary folder, then read back both ways, alternating, best of
``--repeats``. Ours writes as the dump stage does: appends of ``--append-rows`` rows, then
flush, fsync and rename into place; the .npy side saves the same three arrays and fsyncs them
too, so both sides end with the data on disk. Reads run from the page cache (both files were
just written). Ours verifies every chunk against its digest as it reads it, inside the read
figure, which is `Bank.features("train")` vs `np.load` of the features file; `Bank.open`
(metadata, shapes and the digest tables) is timed on its own. Ratios are ours / numpy in
MB/s (goal >= 0.7 for both).

    python bench/bank_io.py                          # 200k x 256 (205 MB of features)
    python bench/bank_io.py --rows 50000 --dim 128
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from features.bank import Bank, BankMeta, BankWriter

CLASSES = 100


def synthetic(rows: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Features float32 [N, D], labels int64 [N] in [0, CLASSES) and index int64 [N]."""
    rng = np.random.default_rng(seed)
    return {
        "features": rng.standard_normal((rows, dim), dtype=np.float32),
        "labels": rng.integers(0, CLASSES, size=rows, dtype=np.int64),
        "index": np.arange(rows, dtype=np.int64),
    }


def write_bank(path: Path, arrays: dict[str, np.ndarray], append_rows: int) -> None:
    """The dump stage's write path: appends of `append_rows` rows, then commit (fsync, rename)."""
    meta = BankMeta(
        method="ce",
        backbone="bench",
        dataset="bench",
        num_classes=CLASSES,
        feature_dim=arrays["features"].shape[1],
        seed=0,
        params_digest="bench",
        checkpoint_sha256="bench",
        class_counts=np.bincount(arrays["labels"], minlength=CLASSES),
    )
    rows = len(arrays["labels"])
    with BankWriter(path, meta, split_sizes={"train": rows}) as bank:
        for start in range(0, rows, append_rows):
            block = slice(start, start + append_rows)
            bank.append("train", **{name: values[block] for name, values in arrays.items()})


def write_npy(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """`np.save` of each array into its own file, fsynced like the bank."""
    for name, values in arrays.items():
        with open(folder / f"{name}.npy", "wb") as stream:
            np.save(stream, values)
            stream.flush()
            os.fsync(stream.fileno())


def read_bank(path: Path) -> np.ndarray:
    """`Bank.features` of an already validated bank (`Bank.open` is timed separately)."""
    with Bank.open(path) as bank:
        return bank.features("train")


def timed(work: Callable[[], Any]) -> float:
    """Seconds of one call of `work`."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(
    rows: int = 200_000,
    dim: int = 256,
    repeats: int = 3,
    append_rows: int = 512,
    folder: str | None = None,
) -> dict[str, Any]:
    """Write and read throughput of a bank and of .npy files of the same arrays.

    Args:
        rows: Rows N of the train split.
        dim: Feature width D.
        repeats: Alternating rounds of each operation; the best of each side counts.
        append_rows: Rows per `BankWriter.append` (the dump stage appends one batch at a time).
        folder: Where the temporary files go (default: the system's temporary folder).

    Returns:
        Sizes, seconds and MB/s of each side, the ratios ours / numpy, and the seconds of
        `Bank.open` (validation) and of the read including it.
    """
    arrays = synthetic(rows, dim)
    megabytes = arrays["features"].nbytes / 1e6
    total_megabytes = sum(values.nbytes for values in arrays.values()) / 1e6
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        root = Path(tmp)
        bank_path, npy = root / "bank.h5", root / "npy"
        npy.mkdir()
        write = {"ours": [], "numpy": []}
        for _ in range(repeats):
            for name, work in (
                ("numpy", lambda: write_npy(npy, arrays)),
                ("ours", lambda: write_bank(bank_path, arrays, append_rows)),
            ):
                write[name].append(timed(work))
        file_megabytes = bank_path.stat().st_size / 1e6
        read: dict[str, list[float]] = {"ours": [], "numpy": [], "open": [], "open_read": []}
        with Bank.open(bank_path) as bank:
            if not np.array_equal(bank.features("train"), arrays["features"]):
                raise SystemExit("the bank does not read back what was written")
            for _ in range(repeats):
                read["numpy"].append(timed(lambda: np.load(npy / "features.npy")))
                read["ours"].append(timed(lambda bank=bank: bank.features("train")))
        for _ in range(repeats):
            read["open"].append(timed(lambda: Bank.open(bank_path).close()))
            read["open_read"].append(timed(lambda: read_bank(bank_path)))
    best = {f"write_{name}_s": min(values) for name, values in write.items()}
    best |= {f"read_{name}_s": min(values) for name, values in read.items()}
    return {
        "rows": rows,
        "dim": dim,
        "append_rows": append_rows,
        "features_mb": megabytes,
        "arrays_mb": total_megabytes,
        "bank_file_mb": file_megabytes,
        **best,
        "write_ours_mb_s": total_megabytes / best["write_ours_s"],
        "write_numpy_mb_s": total_megabytes / best["write_numpy_s"],
        "write_ratio": best["write_numpy_s"] / best["write_ours_s"],
        "read_ours_mb_s": megabytes / best["read_ours_s"],
        "read_numpy_mb_s": megabytes / best["read_numpy_s"],
        "read_ratio": best["read_numpy_s"] / best["read_ours_s"],
        "read_open_ratio": best["read_numpy_s"] / best["read_open_read_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--append-rows", type=int, default=512)
    parser.add_argument("--folder", default=None, help="temporary folder (default: system's)")
    args = parser.parse_args()
    r = measure(args.rows, args.dim, args.repeats, args.append_rows, args.folder)
    print(
        f"bank I/O, {r['rows']} x {r['dim']} float32 ({r['features_mb']:.0f} MB of features, "
        f"{r['arrays_mb']:.0f} MB with labels and index; bank file {r['bank_file_mb']:.0f} MB), "
        f"appends of {r['append_rows']} rows, best of {args.repeats}"
    )
    print(f"{'operation':<40}{'seconds':>9}{'MB/s':>9}{'ratio':>8}")
    print(
        f"{'write  np.save x3 + fsync':<40}{r['write_numpy_s']:>9.3f}{r['write_numpy_mb_s']:>9.0f}"
    )
    print(
        f"{'write  BankWriter (append, commit)':<40}{r['write_ours_s']:>9.3f}"
        f"{r['write_ours_mb_s']:>9.0f}{r['write_ratio']:>8.2f}"
    )
    print(f"{'read   np.load features':<40}{r['read_numpy_s']:>9.3f}{r['read_numpy_mb_s']:>9.0f}")
    print(
        f"{'read   Bank.features (open excluded)':<40}{r['read_ours_s']:>9.3f}"
        f"{r['read_ours_mb_s']:>9.0f}{r['read_ratio']:>8.2f}"
    )
    print(f"{'open   Bank.open (metadata, digest tables)':<40}{r['read_open_s']:>9.3f}")
    print(
        f"{'read   Bank.open + features':<40}{r['read_open_read_s']:>9.3f}"
        f"{r['features_mb'] / r['read_open_read_s']:>9.0f}{r['read_open_ratio']:>8.2f}"
    )
    print("goal: ratios >= 0.7")


if __name__ == "__main__":
    main()
