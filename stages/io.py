"""Atomic, byte-reproducible writes of the small outputs stages produce.

Every output appears only when complete: it is written to a temporary file in the same folder,
flushed to disk, then renamed over the target (``os.replace`` is atomic on POSIX), so a killed
run leaves either the old file or none, never a truncated one, and DVC never caches half a file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import save_torch_atomically, write_bytes_atomically


def write_bytes(target: str | Path, data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    write_bytes_atomically(target, data)


def json_ready(value: Any) -> Any:
    """A copy fit for canonical JSON: floats rounded to 6 decimals (stable, readable bytes),
    NaN and infinities as null, NumPy scalars as Python numbers; dicts and lists recursed."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 6) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(target: str | Path, payload: Any) -> None:
    """Atomically write canonical JSON (sorted keys, 2-space indent, trailing newline)."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes(target, text.encode())


def write_csv(target: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Atomically write a CSV table (floats with 6 significant digits, so bytes are stable)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{value:.6g}" if isinstance(value, float) else value for value in row])
    write_bytes(target, buffer.getvalue().encode())


def save_torch(target: str | Path, payload: Any) -> None:
    """Atomically ``torch.save`` a payload (torch's zip writer is byte-stable for equal inputs)."""
    save_torch_atomically(payload, target)


def write_npz(target: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write an .npz of plain arrays, byte-stable: ``np.savez`` stamps each member
    with the current time, so the zip is written here with a fixed one (and no pickles)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, member.getvalue())
    write_bytes(target, buffer.getvalue())


def write_predictions(
    target: str | Path,
    index: np.ndarray,
    labels: np.ndarray,
    class_counts: np.ndarray,
    predicted: dict[str, np.ndarray],
) -> None:
    """``predictions.npz``: the test rows' bank index [N], labels [N], the bank's class counts
    [C], and one int64 [N] array of predicted classes per key; plain arrays, read with
    allow_pickle=False."""
    write_npz(target, {"index": np.asarray(index, np.int64),
                       "labels": np.asarray(labels, np.int64),
                       "class_counts": np.asarray(class_counts, np.int64),
                       **{key: np.asarray(value, np.int64) for key, value in predicted.items()}})


def fmt(value: float | None) -> str:
    """A metric for a log line: 4 decimals, "n/a" for an empty shot group (None or NaN)."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def sha256_file(path: str | Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
