"""Row arithmetic of chunked reads: which rows one slice of a dataset covers.

A bank's row datasets are chunked and each chunk is verified whole, so a read costs whole
chunks. These helpers turn wanted rows into few, chunk-aligned slices (`Bank.gather`) and
pick a block height that matches the chunks (`Bank.iter_chunks`).
"""

from __future__ import annotations

from collections.abc import Iterator

import h5py
import numpy as np

from features.bank.schema import chunk_rows
from features.errors import FeaturesError

# A gather reads neighbouring chunks with one slice of at most this many chunks (~16 MiB).
GATHER_CHUNKS = 16


def position_vector(positions: np.ndarray, name: str) -> np.ndarray:
    """An int64 copy of a 1-D array of row positions; floats, booleans (a mask is not a list
    of positions) and other shapes are refused in one line naming `name`."""
    array = np.asarray(positions)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise FeaturesError(
            f"{name}: expected a 1-D array of integer positions, got {array.dtype} {array.shape}"
        )
    return array.astype(np.int64, copy=False)


def chunk_runs(chunk_ids: np.ndarray, max_chunks: int) -> Iterator[tuple[int, int]]:
    """[begin, end) ranges of sorted chunk ids (repeats allowed) that fall in one run of
    neighbouring chunks spanning at most `max_chunks` chunks."""
    chunks, firsts = np.unique(chunk_ids, return_index=True)
    run_start = 0
    for position in range(1, len(chunks) + 1):
        if position == len(chunks) or (
            chunks[position] - chunks[position - 1] > 1
            or chunks[position] - chunks[run_start] >= max_chunks
        ):
            end = int(firsts[position]) if position < len(chunks) else len(chunk_ids)
            yield int(firsts[run_start]), end
            run_start = position


def default_rows(dataset: h5py.Dataset) -> int:
    """The HDF5 chunk height, or ~1 MiB of rows for an unchunked dataset."""
    if dataset.chunks is not None:
        return dataset.chunks[0]
    row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
    return chunk_rows(row_bytes, 1 << 20)
