"""Whole-chunk writes and verified reads of a bank's row datasets (schema version 3).

A row dataset is chunked along its rows and has no HDF5 filter; its integrity is the digest
of each chunk (`features.bank.digest`). Both directions move whole chunks, one call per
chunk, with no chunk cache and no filter pipeline, so a chunk goes between the file and the
caller's array in one copy and is digested while it is still in the CPU cache.

Writes use HDF5's direct chunk write (`H5Dwrite_chunk`). Reads look up every chunk's file
offset once per dataset (`ChunkSource`, one walk of HDF5's chunk index) and then read each
chunk with one `preadv` on HDF5's own file descriptor. `H5Dread_chunk` would do the same
copy but looks the chunk up in the index on every call, about 12 us a chunk, which took a
read of 200 MB from 0.80 to 0.72 of `np.load`. Where `preadv` or the plain POSIX file driver
is missing, reads go through `H5Dread_chunk`. A wrong offset cannot slip through: the bytes
read are checked against the chunk's digest, and a chunk that fails is read once more through
`H5Dread_chunk` before it is refused, so only the file's own bytes can fail a read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True, eq=False)
class ChunkSource:
    """Where the chunks of one row dataset lie in its file, to read them without HDF5.

    Attributes:
        descriptor: HDF5's own descriptor of the open file (read with `preadv`, which leaves
            its position alone).
        offsets: int64 [chunks] (read-only), the file offset of each chunk; -1 where the
            index has no chunk or one of another size (such a chunk is read through HDF5).
        chunk_bytes: Bytes of one whole chunk.
    """

    descriptor: int
    offsets: np.ndarray
    chunk_bytes: int

    @classmethod
    def of(cls, dataset: h5py.Dataset) -> ChunkSource | None:
        """The source of a chunked row dataset, or None where reads must go through HDF5:
        no `os.preadv` on this platform, a file driver other than the POSIX one, or a file
        with a user block (HDF5 before 1.14.4 gives chunk addresses without it)."""
        file = dataset.file
        if not hasattr(os, "preadv") or file.driver != "sec2" or file.userblock_size:
            return None
        total, *row_shape = dataset.shape
        rows = int(dataset.chunks[0])
        chunk_bytes = rows * math.prod(row_shape) * dataset.dtype.itemsize
        offsets = np.full(math.ceil(total / rows), -1, dtype=np.int64)
        for info in stored_chunks(dataset.id):
            chunk = info.chunk_offset[0] // rows
            if info.size == chunk_bytes and chunk < len(offsets):
                offsets[chunk] = info.byte_offset
        offsets.setflags(write=False)
        return cls(file.id.get_vfd_handle(), offsets, chunk_bytes)

    def read(self, chunk: int, into: np.ndarray) -> bool:
        """Reads whole chunk `chunk` into `into` (uint8 [chunk_bytes], contiguous).

        Returns:
            Whether every byte was read: False for a chunk the index lacks or a file cut short.
        """
        offset = int(self.offsets[chunk])
        if offset < 0:
            return False
        done = 0
        while done < self.chunk_bytes:  # preadv may return less than asked; 0 is the end
            got = os.preadv(self.descriptor, [into[done:]], offset + done)
            if got <= 0:
                return False
            done += got
        return True


def stored_chunks(dataset_id: h5py.h5d.DatasetID) -> list[h5py.h5d.StoreInfo]:
    """Every chunk HDF5's index holds for a dataset: one walk of the index where HDF5 has
    `H5Dchunk_iter` (1.12.3 and later), else one lookup per chunk."""
    if hasattr(dataset_id, "chunk_iter"):
        found: list[h5py.h5d.StoreInfo] = []
        dataset_id.chunk_iter(found.append)
        return found
    return stored_chunks_one_by_one(dataset_id)


def stored_chunks_one_by_one(dataset_id: h5py.h5d.DatasetID) -> list[h5py.h5d.StoreInfo]:
    """`stored_chunks` for an HDF5 without `H5Dchunk_iter`: about 55 us a chunk."""
    return [dataset_id.get_chunk_info(position) for position in range(dataset_id.get_num_chunks())]


def read_verified(
    dataset: h5py.Dataset,
    digests: np.ndarray,
    start: int,
    stop: int,
    refuse: Callable[[int, int], FeaturesError],
    source: ChunkSource | None = None,
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
        source: The dataset's chunk offsets, to read chunks with `preadv`; None reads them
            with `H5Dread_chunk`.

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
        into = target.reshape(-1).view(np.uint8)
        digest = expected[chunk - chunks.start]
        if source is None or not source.read(chunk, into) or block_digest(target[:valid]) != digest:
            # no source, or its read failed: through HDF5 before refusing, so an offset gone
            # stale (the index moved, the descriptor was closed) is never taken for damage
            dataset_id.read_direct_chunk((first,) + (0,) * len(row_shape), out=into)
            if block_digest(target[:valid]) != digest:
                raise refuse(first, first + valid - 1)
        if target is scratch:
            low, high = max(start, first), min(stop, first + valid)
            out[low - start : high - start] = scratch[low - first : high - first]
    return out
