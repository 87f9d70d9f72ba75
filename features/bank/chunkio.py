"""Whole-chunk writes and verified reads of a bank's row datasets (schema version 2).

A row dataset is chunked along its rows and has no HDF5 filter; its integrity is the digest
of each chunk (`features.bank.digest`). Both directions move whole chunks with HDF5's direct
chunk calls (`H5Dwrite_chunk` / `H5Dread_chunk`): one call per chunk, no chunk cache and no
filter pipeline, so a chunk goes between the file and the caller's array in one copy and is
digested while it is still in the CPU cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import h5py
import numpy as np

from features.bank.digest import block_digest
from features.errors import FeaturesError


class ChunkWriter:
    """Appends rows to one growing row dataset, one whole chunk at a time.

    Rows are gathered in a buffer of one chunk; a full chunk is digested and written, and
    the digests are kept for the table the writer stores at the end. The last, partial
    chunk is written by `finish`, zero-padded so the same rows give the same bytes.
    """

    def __init__(self, dataset: h5py.Dataset) -> None:
        """Args:
        dataset: An empty dataset, chunked as (rows, *row shape), maxshape (None, ...).
        """
        self.dataset = dataset
        self.rows = int(dataset.chunks[0])
        self.row_shape: tuple[int, ...] = tuple(dataset.shape[1:])
        self.digests: list[int] = []
        self._buffer = np.zeros((self.rows, *self.row_shape), dtype=dataset.dtype)
        self._filled = 0
        self._written = 0

    def append(self, values: np.ndarray) -> None:
        """Adds C-contiguous rows of the dataset's dtype and row shape."""
        start = 0
        while start < len(values):
            if self._filled == 0 and len(values) - start >= self.rows:
                # a whole chunk of the caller's rows: written from them, without a copy
                self._write(values[start : start + self.rows], self.rows)
                start += self.rows
                continue
            take = min(self.rows - self._filled, len(values) - start)
            self._buffer[self._filled : self._filled + take] = values[start : start + take]
            self._filled += take
            start += take
            if self._filled == self.rows:
                self._write(self._buffer, self.rows)
                self._filled = 0

    def finish(self) -> None:
        """Writes the partial last chunk, if any; the dataset then has every appended row."""
        if self._filled:
            self._buffer[self._filled :] = 0
            self._write(self._buffer, self._filled)
            self._filled = 0

    def _write(self, chunk: np.ndarray, valid: int) -> None:
        first = self._written
        self.digests.append(block_digest(chunk[:valid]))
        self.dataset.resize(first + valid, axis=0)
        offset = (first,) + (0,) * len(self.row_shape)
        self.dataset.id.write_direct_chunk(offset, np.ascontiguousarray(chunk))
        self._written = first + valid


def read_verified(
    dataset: h5py.Dataset,
    digests: np.ndarray,
    start: int,
    stop: int,
    refuse: Callable[[int, int], FeaturesError],
) -> np.ndarray:
    """Rows [start, stop) of a row dataset, every chunk they touch checked against its digest.

    A chunk inside the range is read straight into the result; a chunk the range only
    partly covers (its ends, and the dataset's short last chunk) is read whole into a
    scratch chunk, verified whole, and its wanted rows copied.

    Args:
        dataset: A chunked, unfiltered row dataset.
        digests: uint64 [chunks], the digest of each chunk.
        start: First row, >= 0.
        stop: One past the last row; clipped to the dataset's length.
        refuse: Makes the error for a chunk (first row, last row) that fails its digest.

    Returns:
        [stop - start, ...] rows.
    """
    # h5py's properties are HDF5 calls: read them once, not once per chunk
    total, *row_shape = dataset.shape
    dtype, rows, dataset_id = dataset.dtype, int(dataset.chunks[0]), dataset.id
    stop = min(stop, total)
    start = min(max(start, 0), stop)
    out = np.empty((stop - start, *row_shape), dtype=dtype)
    scratch: np.ndarray | None = None
    chunks = range(start // rows, math.ceil(stop / rows))
    # the digests of these chunks only: a split is read chunk by chunk, and converting its
    # whole table on every call made a whole read quadratic in its chunks
    expected = digests[chunks.start : chunks.stop].tolist()
    for chunk in chunks:
        first = chunk * rows
        valid = min(rows, total - first)
        if valid == rows and start <= first and first + rows <= stop:
            target = out[first - start : first - start + rows]
        else:
            if scratch is None:
                scratch = np.empty((rows, *row_shape), dtype=dtype)
            target = scratch
        offset = (first,) + (0,) * len(row_shape)
        dataset_id.read_direct_chunk(offset, out=target.reshape(-1).view(np.uint8))
        if block_digest(target[:valid]) != expected[chunk - chunks.start]:
            raise refuse(first, first + valid - 1)
        if target is scratch:
            low, high = max(start, first), min(stop, first + valid)
            out[low - start : high - start] = scratch[low - first : high - first]
    return out
