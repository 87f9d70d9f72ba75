"""The streaming, atomic writer of a bank.

Rows are appended split by split into a temporary file next to the bank, which is renamed
into place only when every split is complete. The same appends give the same file bytes:
times are not recorded, the HDF5 format version is pinned and attributes are written in one
fixed order (`features.bank.schema`). Row datasets are written a whole chunk at a time, each
chunk with its digest (`features.bank.chunkio`, `features.bank.digest`); the digest tables and
the small root datasets carry the Fletcher-32 filter, and the pinned format (HDF5 1.10
objects) checksums all metadata, so a corrupted bank is reported as such instead of being
read as garbage.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback as stdlib_traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from core.atomic import commit, new_temporary
from core.splits import SPLITS
from features.bank.chunkio import ChunkWriter
from features.bank.digest import DIGEST_DTYPE
from features.bank.schema import (
    INT_ATTRS,
    LIBVER,
    OPTIONAL_STRING_ATTRS,
    SCHEMA_VERSION,
    STRING_ATTRS,
    BankMeta,
    check_meta,
    chunk_rows,
    digest_path,
)
from features.errors import FeaturesError


def _write_string_attr(file: h5py.File, name: str, value: str) -> None:
    encoded = value.encode("utf-8")
    # Fixed-length strings live in the checksummed object header; variable-length
    # ones would sit in the unchecksummed global heap.
    string_type = h5py.string_dtype("utf-8", max(1, len(encoded)))
    file.attrs.create(name, np.array(encoded, dtype=string_type))


class BankWriter:
    """Streams features into a new bank and renames it into place only when complete.

    Use as a context manager. Each `append` adds rows to one split; the file appears at
    `path` on a clean exit from the `with` block, after every split's datasets were checked
    to have the same number of rows. On an exception the temporary file is deleted and any
    bank already at `path` stays as it was.
    """

    def __init__(
        self,
        path: str | Path,
        meta: BankMeta,
        *,
        chunk_bytes: int = 1 << 20,
        split_sizes: Mapping[str, int] | None = None,
    ) -> None:
        """Prepares a writer; the temporary file is created on entering the `with` block.

        Args:
            path: Destination of the bank.
            meta: Provenance and shapes; `class_counts` is int [C].
            chunk_bytes: Target size of one HDF5 chunk of a growing dataset.
            split_sizes: Expected rows of each split, when known: a chunk is never taller than
                its split, so a small bank does not carry 1 MiB chunks that are mostly empty.
        """
        self.path = Path(path)
        check_meta(meta, str(self.path))
        if chunk_bytes < 1:
            raise FeaturesError(f"{self.path}: chunk_bytes must be >= 1, got {chunk_bytes}")
        self.meta = meta
        self.chunk_bytes = chunk_bytes
        self.split_sizes = dict(split_sizes or {})
        self._file: h5py.File | None = None
        self._lost_writes: list[int] = []
        self._previous_hooks: tuple[Callable[..., None], Callable[..., None]] | None = None
        self._tmp_path: Path | None = None
        self._datasets: dict[str, ChunkWriter] = {}
        self._split_fields: dict[str, set[str]] = {}

    def __enter__(self) -> BankWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A writer killed with SIGKILL cannot clean up: drop its half-written temporaries,
        # which are never the bank itself (the bank only appears by rename when complete).
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        self._tmp_path = new_temporary(self.path)
        self._lost_writes = []
        self._previous_hooks = (sys.unraisablehook, sys.excepthook)
        sys.unraisablehook, sys.excepthook = self._record_lost_write, self._record_printed_write
        try:
            with self._naming_write_errors():
                self._file = h5py.File(self._tmp_path, "w", libver=LIBVER)
                self._write_header()
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard(traceback)
            return
        try:
            with self._naming_write_errors():
                self._finish_datasets()
            self._check_lengths()
            self._commit()
        except BaseException as error:
            self._discard(error.__traceback__)
            raise

    def append(
        self,
        split: str,
        *,
        features: np.ndarray,
        labels: np.ndarray,
        index: np.ndarray,
        logits: np.ndarray | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Adds rows to one split.

        Args:
            split: One of `SPLITS`.
            features: float [n, D], finite.
            labels: int [n], each in [0, C).
            index: int [n], positions of the rows in the dataset split.
            logits: float [n, C], the backbone's own head; give it on every append of a split
                or on none.
            extra: Other views, name -> float [n, D_name]; the same names on every append.
        """
        file = self._require_open()
        where = f"{self.path}:{split}"
        if split not in SPLITS:
            raise FeaturesError(f"{self.path}: unknown split {split!r}; use one of {SPLITS}")
        rows = self._validated_rows(where, features, labels, index, logits, extra or {})
        # The fields of a split are remembered from its first append rather than looked up
        # in the file: HDF5 lookups on every append cost more than writing its rows.
        fields = self._split_fields.setdefault(split, set(rows))
        if fields != set(rows):
            raise FeaturesError(
                f"{where}: this append has fields {sorted(rows)} but earlier appends had "
                f"{sorted(fields)}; give logits/extra on every append or on none"
            )
        with self._naming_write_errors():
            for name, values in rows.items():
                self._append_rows(file, split, name, values)

    def _write_header(self) -> None:
        file = self._require_open()
        file.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        for name in STRING_ATTRS:
            _write_string_attr(file, name, getattr(self.meta, name))
        for name in INT_ATTRS:
            file.attrs[name] = np.int64(getattr(self.meta, name))
        for name in OPTIONAL_STRING_ATTRS:
            # after every attribute a dumped bank has, and only when set: dumped banks keep
            # their bytes
            if getattr(self.meta, name) is not None:
                _write_string_attr(file, name, getattr(self.meta, name))
        counts = np.asarray(self.meta.class_counts, dtype=np.int64)
        self._create_fixed(file, "class_counts", counts)
        if self.meta.class_names is not None:
            encoded = [name.encode("utf-8") for name in self.meta.class_names]
            # Fixed-length strings, unlike variable-length ones, admit the checksum filter.
            width = max(1, *(len(name) for name in encoded))
            names = np.array(encoded, dtype=h5py.string_dtype("utf-8", width))
            self._create_fixed(file, "class_names", names)

    @staticmethod
    def _create_fixed(file: h5py.File, name: str, data: np.ndarray) -> None:
        # Small datasets read whole: Fletcher-32 costs nothing here. maxshape None admits the
        # one-element chunk of an empty digest table.
        file.create_dataset(
            name,
            data=data,
            chunks=(max(1, len(data)),),
            maxshape=(None,),
            fletcher32=True,
            track_times=False,
        )

    def _validated_rows(
        self,
        where: str,
        features: np.ndarray,
        labels: np.ndarray,
        index: np.ndarray,
        logits: np.ndarray | None,
        extra: Mapping[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        num_classes, dim = self.meta.num_classes, self.meta.feature_dim
        rows = {
            "features": _as_float_matrix(features, f"{where}/features", width=dim),
            "labels": _as_int_vector(labels, f"{where}/labels"),
            "index": _as_int_vector(index, f"{where}/index"),
        }
        if logits is not None:
            rows["logits"] = _as_float_matrix(logits, f"{where}/logits", width=num_classes)
        for name, values in extra.items():
            if not name or "/" in name:
                raise FeaturesError(f"{where}: extra name {name!r} must be non-empty, without '/'")
            rows[f"extra/{name}"] = _as_float_matrix(values, f"{where}/extra/{name}")
        labels_ = rows["labels"]
        if labels_.size and (labels_.min() < 0 or labels_.max() >= num_classes):
            raise FeaturesError(
                f"{where}/labels: labels must lie in [0, {num_classes}); "
                "fix the labels or num_classes"
            )
        lengths = {name: len(values) for name, values in rows.items()}
        if len(set(lengths.values())) != 1:
            raise FeaturesError(f"{where}: arrays of one append differ in length: {lengths}")
        return rows

    def _append_rows(self, file: h5py.File, split: str, name: str, values: np.ndarray) -> None:
        # One open ChunkWriter per dataset holds the partly filled chunk in memory, so HDF5
        # only ever sees whole chunks: no chunk cache, no read-back of a partial chunk.
        key = f"/{split}/{name}"
        if key not in self._datasets:
            group = file.require_group(split)
            self._datasets[key] = ChunkWriter(self._create_growing(group, name, values))
        stream = self._datasets[key]
        if stream.row_shape != values.shape[1:]:
            raise FeaturesError(
                f"{self.path}:{key}: width {values.shape[1:]} differs from earlier "
                f"appends {stream.row_shape}; keep every append the same width"
            )
        stream.append(values)

    def _finish_datasets(self) -> None:
        """Writes every partial last chunk, then the digest table of each row dataset."""
        file = self._require_open()
        for key in sorted(self._datasets):
            stream = self._datasets[key]
            stream.finish()
            split, field = key.strip("/").split("/", 1)
            self._create_fixed(
                file, digest_path(split, field), np.array(stream.digests, dtype=DIGEST_DTYPE)
            )

    def _create_growing(self, group: h5py.Group, name: str, values: np.ndarray) -> h5py.Dataset:
        row_shape = values.shape[1:]
        row_bytes = values.dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
        rows = chunk_rows(row_bytes, self.chunk_bytes)
        split = group.name.strip("/").split("/")[0]
        if self.split_sizes.get(split, 0) > 0:
            rows = min(rows, self.split_sizes[split])
        # No filter: each chunk's digest (features.bank.digest) is its checksum.
        return group.create_dataset(
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            chunks=(rows, *row_shape),
            dtype=values.dtype,
            track_times=False,
        )

    @staticmethod
    def _fields(group: h5py.Group) -> set[str]:
        names = {name for name in group if name != "extra"}
        if "extra" in group:
            names |= {f"extra/{name}" for name in group["extra"]}
        return names

    def _check_lengths(self) -> None:
        file = self._require_open()
        for split in SPLITS:
            if split not in file:
                continue
            lengths = {name: file[split][name].shape[0] for name in self._fields(file[split])}
            if len(set(lengths.values())) > 1:
                raise FeaturesError(f"{self.path}:{split}: datasets differ in length: {lengths}")

    @contextlib.contextmanager
    def _naming_write_errors(self) -> Iterator[None]:
        """Turn HDF5's write failures into one ``OSError`` naming the bank.

        HDF5 names the temporary file, adds a time stamp, raises RuntimeError from a flush,
        and reports a failed write of an evicted chunk only from a closing id (to
        ``sys.excepthook`` and ``sys.unraisablehook``, which `__enter__` points at this
        writer) while the
        append that caused it returns normally. All of them become an ``OSError`` with HDF5's
        errno and the bank's path, so a full disk is one clear line.
        """
        try:
            yield
        except (OSError, RuntimeError) as error:
            code = _write_errno(error)
            if code is None:
                raise
            self._lost_writes.append(code)
        if self._lost_writes:
            code = self._lost_writes[0]
            raise OSError(code, os.strerror(code), str(self.path))

    def _record_lost_write(self, unraisable: Any) -> None:
        code = _write_errno(unraisable.exc_value)
        if code is None:
            self._previous_hooks[0](unraisable)
        else:
            self._lost_writes.append(code)

    def _record_printed_write(self, kind: type, error: BaseException, trace: Any) -> None:
        # Cython prints an error raised while freeing an id through sys.excepthook first
        code = _write_errno(error)
        if code is None:
            self._previous_hooks[1](kind, error, trace)
        else:
            self._lost_writes.append(code)

    def _commit(self) -> None:
        file = self._require_open()
        with self._naming_write_errors():
            # flush while every dataset is open: a failure then raises here, instead of
            # leaving the id of a dataset whose closing flush failed open inside HDF5
            file.flush()
            self._datasets.clear()
            file.close()
        self._file = None
        self._restore_hook()
        assert self._tmp_path is not None
        commit(self._tmp_path, self.path)
        self._tmp_path = None

    def _discard(self, trace: TracebackType | None = None) -> None:
        """Throw the temporary file away. The frames of ``trace`` (the error's) hold h5py
        objects; they are released now, while h5py can close them, not at interpreter exit,
        where closing an id of a failed file crashes the process."""
        if self._file is not None:
            _silence(self._file)  # before the datasets close: each close flushes its chunks
        if trace is not None:
            stdlib_traceback.clear_frames(trace)
        self._datasets.clear()
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        self._restore_hook()
        if self._tmp_path is not None:
            self._tmp_path.unlink(missing_ok=True)
            self._tmp_path = None

    def _restore_hook(self) -> None:
        if self._previous_hooks is not None:
            sys.unraisablehook, sys.excepthook = self._previous_hooks
            self._previous_hooks = None

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise FeaturesError(
                f"{self.path}: BankWriter is not open; use it as `with BankWriter(...) as w:`"
            )
        return self._file


def _write_errno(error: BaseException | None) -> int | None:
    """The errno of a failed file write, as h5py raises it (an OSError, or a RuntimeError
    whose message holds ``errno = N``); None for any other error."""
    if isinstance(error, OSError) and error.errno:
        return error.errno
    if isinstance(error, RuntimeError):
        found = re.search(r"errno = (\d+)", str(error))
        return int(found.group(1)) if found else None
    return None


def _silence(file: h5py.File) -> None:
    """Point an abandoned file's descriptor at /dev/null.

    HDF5 flushes whatever it holds when a dataset or the file closes; on a full disk that
    flush fails, the file stays open, and closing it again when the interpreter exits crashes
    the process. The file is deleted anyway, so its flushes may as well go nowhere.
    """
    with contextlib.suppress(Exception):
        descriptor = file.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, descriptor)
        os.close(null)


def _as_float_matrix(values: np.ndarray, where: str, width: int | None = None) -> np.ndarray:
    """A C-contiguous float32 copy of a finite real [N, width] array; refused in one line."""
    array = np.asarray(values)
    if array.ndim != 2 or (width is not None and array.shape[1] != width):
        expected = f"[N, {width}]" if width is not None else "[N, D]"
        raise FeaturesError(f"{where}: expected a {expected} array, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise FeaturesError(f"{where}: expected real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        raise FeaturesError(f"{where}: contains NaN or inf; fix the values before writing")
    return array


def _as_int_vector(values: np.ndarray, where: str) -> np.ndarray:
    """An int64 copy of an integer [N] array; refused in one line naming `where`."""
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise FeaturesError(
            f"{where}: expected an integer [N] array, got {array.dtype} of shape {array.shape}"
        )
    return np.ascontiguousarray(array, dtype=np.int64)
