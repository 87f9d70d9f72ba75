"""HDF5 feature banks, schema version 1: a streaming atomic writer and a validating reader.

Layout of a bank (see DESIGN.md, "Feature bank")::

    attrs                  schema_version + every scalar field of `BankMeta`
    class_counts           int64   [C]
    class_names            utf-8   [C]      (optional)
    <split>/features       float32 [N, D]
    <split>/labels         int64   [N]
    <split>/index          int64   [N]
    <split>/logits         float32 [N, C]   (optional)
    <split>/extra/<name>   float32 [N, D']  (optional)

The same appends give the same file bytes: times are not recorded, the HDF5 format version
is pinned and attributes are written in one fixed order. Every dataset is chunked with the
Fletcher-32 checksum filter, and the pinned format (HDF5 1.10 objects) checksums all
metadata, so a corrupted bank is reported as such instead of being read as garbage.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import traceback as stdlib_traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import h5py
import numpy as np

from core.atomic import commit, new_temporary
from core.splits import SPLITS
from features.errors import FeaturesError

SCHEMA_VERSION = 1
_T = TypeVar("_T")
# A gather reads neighbouring chunks with one slice of at most this many chunks (~16 MiB).
_GATHER_CHUNKS = 16

# Pinned so that the bytes of a bank do not depend on the HDF5 release's defaults; 1.10 objects
# carry checksums on all metadata.
_LIBVER = ("v110", "v110")
_STRING_ATTRS = (
    "method",
    "backbone",
    "dataset",
    "params_digest",
    "checkpoint_sha256",
    "augment",
    "tailbank_version",
)
_INT_ATTRS = ("num_classes", "feature_dim", "seed")
# h5py, numpy and the HDF5 library signal a damaged file through any of these.
_READ_ERRORS = (
    OSError,
    KeyError,
    ValueError,
    TypeError,
    RuntimeError,
    IndexError,
    AttributeError,
    UnicodeDecodeError,
    OverflowError,
    MemoryError,
)


def _installed_version() -> str:
    try:
        return metadata.version("tailbank")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class BankMeta:
    """Provenance and shape information stored with every bank.

    Attributes:
        method: Key of the long-tail method that trained the backbone (`ce`, `paco`, ...).
        backbone: Name of the backbone architecture.
        dataset: Name of the dataset the features come from.
        num_classes: Number of classes C.
        feature_dim: Width D of `<split>/features`.
        seed: Seed of the run that produced the backbone.
        params_digest: sha256 of the params that produced the bank.
        checkpoint_sha256: sha256 of the backbone checkpoint the features come from.
        class_counts: int64 [C], training frequency of each class.
        class_names: Optional C class names.
        augment: Augmentation applied before feature extraction ("none").
        tailbank_version: Version of tailbank that wrote the bank.
    """

    method: str
    backbone: str
    dataset: str
    num_classes: int
    feature_dim: int
    seed: int
    params_digest: str
    checkpoint_sha256: str
    class_counts: np.ndarray
    class_names: tuple[str, ...] | None = None
    augment: str = "none"
    tailbank_version: str = field(default_factory=_installed_version)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BankMeta):
            return NotImplemented
        return _meta_key(self) == _meta_key(other)

    def __hash__(self) -> int:
        return hash(_meta_key(self))


def _meta_key(meta: BankMeta) -> tuple:
    scalars = tuple(getattr(meta, name) for name in _STRING_ATTRS + _INT_ATTRS)
    counts = tuple(int(count) for count in np.asarray(meta.class_counts).ravel())
    return scalars + (counts, meta.class_names)


def _check_meta(meta: BankMeta, where: str) -> None:
    for name in _STRING_ATTRS:
        if not isinstance(getattr(meta, name), str):
            raise FeaturesError(f"{where}: BankMeta.{name} must be a str; pass a string")
    for name in _INT_ATTRS:
        value = getattr(meta, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise FeaturesError(f"{where}: BankMeta.{name} must be an int; pass an integer")
    if meta.num_classes < 1 or meta.feature_dim < 1:
        raise FeaturesError(
            f"{where}: BankMeta.num_classes and feature_dim must be >= 1, got "
            f"{meta.num_classes} and {meta.feature_dim}; fix the backbone/dataset settings"
        )
    counts = np.asarray(meta.class_counts)
    if counts.shape != (meta.num_classes,) or not np.issubdtype(counts.dtype, np.integer):
        raise FeaturesError(
            f"{where}: BankMeta.class_counts must be an integer array of shape "
            f"({meta.num_classes},), got {counts.dtype} {counts.shape}; pass one count per class"
        )
    if (counts < 0).any():
        raise FeaturesError(f"{where}: BankMeta.class_counts has negative entries; fix the counts")
    if meta.class_names is not None and len(meta.class_names) != meta.num_classes:
        raise FeaturesError(
            f"{where}: BankMeta.class_names has {len(meta.class_names)} names for "
            f"{meta.num_classes} classes; pass one name per class or None"
        )


def _chunk_rows(row_bytes: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // max(1, row_bytes))


def estimated_bank_bytes(
    split_sizes: Mapping[str, int], meta: BankMeta, extra_width: int = 0, logits: bool = True
) -> int:
    """Bytes a bank of these splits will take on disk, a little over the data itself.

    Args:
        split_sizes: rows per split.
        meta: the bank's attributes (feature width D, class count C).
        extra_width: total width of the extra views per row.
        logits: whether [N, C] logits are stored.

    Returns:
        4 (D + C + extra) + 16 bytes per row (float32 values, int64 labels and index), plus
        5 % and 1 MiB for chunk checksums, headers and the attributes.
    """
    per_row = 4 * (meta.feature_dim + (meta.num_classes if logits else 0) + extra_width) + 16
    data = per_row * sum(int(rows) for rows in split_sizes.values())
    return int(data * 1.05) + (1 << 20)


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
        _check_meta(meta, str(self.path))
        if chunk_bytes < 1:
            raise FeaturesError(f"{self.path}: chunk_bytes must be >= 1, got {chunk_bytes}")
        self.meta = meta
        self.chunk_bytes = chunk_bytes
        self.split_sizes = dict(split_sizes or {})
        self._file: h5py.File | None = None
        self._lost_writes: list[int] = []
        self._previous_hooks: tuple[Callable[..., None], Callable[..., None]] | None = None
        self._tmp_path: Path | None = None
        self._datasets: dict[str, h5py.Dataset] = {}

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
                self._file = h5py.File(self._tmp_path, "w", libver=_LIBVER)
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
        group = file.require_group(split)
        if "features" in group and self._fields(group) != set(rows):
            raise FeaturesError(
                f"{where}: this append has fields {sorted(rows)} but earlier appends had "
                f"{sorted(self._fields(group))}; give logits/extra on every append or on none"
            )
        with self._naming_write_errors():
            for name, values in rows.items():
                self._append_rows(group, name, values)

    def _write_header(self) -> None:
        file = self._require_open()
        file.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        for name in _STRING_ATTRS:
            encoded = getattr(self.meta, name).encode("utf-8")
            # Fixed-length strings live in the checksummed object header; variable-length
            # ones would sit in the unchecksummed global heap.
            string_type = h5py.string_dtype("utf-8", max(1, len(encoded)))
            file.attrs.create(name, np.array(encoded, dtype=string_type))
        for name in _INT_ATTRS:
            file.attrs[name] = np.int64(getattr(self.meta, name))
        counts = np.asarray(self.meta.class_counts, dtype=np.int64)
        self._create_fixed(file, "class_counts", counts)
        if self.meta.class_names is not None:
            encoded = [name.encode("utf-8") for name in self.meta.class_names]
            # Fixed-length strings, unlike variable-length ones, admit the checksum filter.
            width = max(1, *(len(name) for name in encoded))
            names = np.array(encoded, dtype=h5py.string_dtype("utf-8", width))
            self._create_fixed(file, "class_names", names)

    @staticmethod
    def _create_fixed(
        file: h5py.File, name: str, data: np.ndarray, dtype: np.dtype | None = None
    ) -> None:
        file.create_dataset(
            name,
            data=data,
            dtype=dtype,
            chunks=(max(1, len(data)),),
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

    def _append_rows(self, group: h5py.Group, name: str, values: np.ndarray) -> None:
        # Keeping each dataset open keeps HDF5's chunk cache: reopening it per append would
        # flush the cache and read back, checksum and rewrite the partly filled last chunk.
        key = f"{group.name}/{name}"
        if key not in self._datasets:
            if name not in group:
                self._create_growing(group, name, values)
            self._datasets[key] = group[name]
        dataset = self._datasets[key]
        if dataset.shape[1:] != values.shape[1:]:
            raise FeaturesError(
                f"{self.path}:{group.name}/{name}: width {values.shape[1:]} differs from earlier "
                f"appends {dataset.shape[1:]}; keep every append the same width"
            )
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values

    def _create_growing(self, group: h5py.Group, name: str, values: np.ndarray) -> None:
        row_shape = values.shape[1:]
        row_bytes = values.dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
        rows = _chunk_rows(row_bytes, self.chunk_bytes)
        split = group.name.strip("/").split("/")[0]
        if self.split_sizes.get(split, 0) > 0:
            rows = min(rows, self.split_sizes[split])
        group.create_dataset(
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            chunks=(rows, *row_shape),
            dtype=values.dtype,
            fletcher32=True,
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
    array = np.asarray(values)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise FeaturesError(
            f"{where}: expected an integer [N] array, got {array.dtype} of shape {array.shape}"
        )
    return np.ascontiguousarray(array, dtype=np.int64)


class Bank:
    """Read side of a bank, validated in full when opened; a context manager.

    Attributes:
        path: The bank's file.
        meta: Provenance and shapes read from the file.
        splits: The splits present, in `SPLITS` order.
    """

    def __init__(self, path: Path, file: h5py.File) -> None:
        """Wraps an open file; use `Bank.open`, which validates it."""
        self.path = path
        self._file = file
        self.meta = self._guard(self._read_meta)
        self.splits = tuple(split for split in SPLITS if split in file)

    @classmethod
    def open(cls, path: str | Path) -> Bank:
        """Opens and validates a bank.

        Args:
            path: The bank's file.

        Returns:
            The open bank.

        Raises:
            FeaturesError: one line naming the file, when it is missing, not HDF5, truncated,
                corrupted, foreign (no or another schema_version), or lacks an attribute or a
                dataset, has a wrong dtype/shape or inconsistent lengths. Non-finite values and
                labels out of range are refused when they are read (every read checks them).
        """
        path = Path(path)
        if not path.is_file():
            raise FeaturesError(f"{path}: no such bank; run the dump stage that writes it")
        try:
            file = h5py.File(path, "r")
        except _READ_ERRORS as error:
            raise FeaturesError(
                f"{path}: not a readable HDF5 bank ({_one_line(error)}); delete it and re-dump"
            ) from error
        try:
            bank = cls(path, file)
            bank._guard(bank._validate_splits)
        except BaseException:
            with contextlib.suppress(Exception):
                file.close()
            raise
        return bank

    def __enter__(self) -> Bank:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file; further reads raise FeaturesError."""
        with contextlib.suppress(Exception):
            self._file.close()

    def size(self, split: str) -> int:
        """Number of rows N of a split."""
        return int(self._dataset(split, "labels").shape[0])

    def features(self, split: str) -> np.ndarray:
        """float32 [N, D] features of a split."""
        return self._read(split, "features")

    def labels(self, split: str) -> np.ndarray:
        """int64 [N] class labels of a split.

        The train labels must count to the bank's `class_counts`, which every re-balanced
        classifier and shot group relies on; a bank where they disagree is refused.
        """
        labels = self._read(split, "labels")
        if split == "train":
            found = np.bincount(labels, minlength=self.meta.num_classes)
            if not np.array_equal(found, self.meta.class_counts):
                differ = int(np.flatnonzero(found != self.meta.class_counts)[0])
                raise FeaturesError(
                    f"{self.path}: class_counts says class {differ} has "
                    f"{int(self.meta.class_counts[differ])} training rows but train/labels has "
                    f"{int(found[differ])}; re-dump the bank"
                )
        return labels

    def index(self, split: str) -> np.ndarray:
        """int64 [N] positions of the rows in the dataset split."""
        return self._read(split, "index")

    def logits(self, split: str) -> np.ndarray | None:
        """float32 [N, C] logits of the backbone's own head, or None when not stored."""
        if "logits" not in self._group(split):
            return None
        return self._read(split, "logits")

    def extra_names(self, split: str) -> tuple[str, ...]:
        """Names of the extra views of a split, sorted."""
        group = self._group(split)
        if "extra" not in group:
            return ()
        return tuple(sorted(self._guard(lambda: list(group["extra"]))))

    def extra(self, split: str, name: str) -> np.ndarray:
        """float32 [N, D'] extra view `name` of a split."""
        if name not in self.extra_names(split):
            raise FeaturesError(
                f"{self.path}:{split}/extra/{name}: no such view; "
                f"available: {self.extra_names(split)}"
            )
        return self._read(split, f"extra/{name}")

    def iter_chunks(
        self, split: str, field: str = "features", rows: int | None = None
    ) -> Iterator[np.ndarray]:
        """Yields a dataset of a split in consecutive row blocks.

        Args:
            split: One of `self.splits`.
            field: `features`, `labels`, `index`, `logits` or `extra/<name>`.
            rows: Rows per block; default: the dataset's HDF5 chunk height.

        Yields:
            Blocks [r, ...] whose concatenation is the full dataset.
        """
        dataset = self._dataset(split, field)
        step = rows if rows is not None else self._guard(lambda: _default_rows(dataset))
        if step < 1:
            raise FeaturesError(f"{self.path}: rows must be >= 1, got {step}")
        total = self._guard(lambda: dataset.shape[0])
        for start in range(0, total, step):
            block = self._guard(lambda start=start: dataset[start : start + step])
            yield self._checked_values(split, field, block)

    def has(self, split: str, field: str) -> bool:
        """Whether a split holds a dataset `field` (`logits` and extra views are optional)."""
        group = self._group(split)
        return self._guard(lambda: field in group)

    def shape(self, split: str, field: str = "features") -> tuple[int, ...]:
        """Shape of a dataset of a split, without reading it."""
        dataset = self._dataset(split, field)
        return tuple(self._guard(lambda: dataset.shape))

    def read_rows(self, split: str, field: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of a dataset of a split, checked like every read."""
        dataset = self._dataset(split, field)
        block = self._guard(lambda: dataset[start:stop])
        return self._checked_values(split, field, block)

    def gather(self, split: str, field: str, positions: np.ndarray) -> np.ndarray:
        """Rows at `positions` (any order, repeats allowed), reading each HDF5 chunk once.

        The wanted rows are sorted, grouped into runs of neighbouring chunks of at most
        `_GATHER_CHUNKS` chunks, and each run is read with one slice: a random subset of a
        chunked, checksummed dataset costs one pass over the chunks it touches instead of
        one HDF5 call per row.

        Args:
            split: One of `self.splits`.
            field: `features`, `labels`, `index`, `logits` or `extra/<name>`.
            positions: int [B], row positions in [0, N).

        Returns:
            [B, ...] rows in the order of `positions`.
        """
        dataset = self._dataset(split, field)
        total, chunk = self._guard(lambda: (dataset.shape[0], _default_rows(dataset)))
        wanted = position_vector(positions, f"{self.path}:{split}/{field}: row positions")
        if wanted.size and (wanted.min() < 0 or wanted.max() >= total):
            raise FeaturesError(
                f"{self.path}:{split}/{field}: row positions must lie in [0, {total})"
            )
        unique, inverse = np.unique(wanted, return_inverse=True)
        rows = np.empty((len(unique), *dataset.shape[1:]), dtype=dataset.dtype)
        for begin, end in _chunk_runs(unique // chunk, _GATHER_CHUNKS):
            first = int(unique[begin] // chunk) * chunk
            last = min((int(unique[end - 1] // chunk) + 1) * chunk, total)
            block = self._guard(lambda first=first, last=last: dataset[first:last])
            rows[begin:end] = block[unique[begin:end] - first]
        return self._checked_values(split, field, rows)[inverse.reshape(-1)]

    def _read(self, split: str, field: str) -> np.ndarray:
        dataset = self._dataset(split, field)
        return self._checked_values(split, field, self._guard(lambda: dataset[...]))

    def _group(self, split: str) -> h5py.Group:
        if split not in self.splits:
            raise FeaturesError(
                f"{self.path}: no split {split!r} in this bank; it has {self.splits}"
            )
        return self._guard(lambda: self._file[split])

    def _dataset(self, split: str, field: str) -> h5py.Dataset:
        group = self._group(split)
        if field not in group:
            raise FeaturesError(f"{self.path}:{split}/{field}: no such dataset in this bank")
        return self._guard(lambda: group[field])

    def _guard(self, read: Callable[[], _T]) -> _T:
        """Runs `read`, turning any error of a damaged file into one FeaturesError line."""
        try:
            return read()
        except FeaturesError:
            raise
        except _READ_ERRORS as error:
            raise FeaturesError(
                f"{self.path}: damaged or foreign bank ({_one_line(error)}); delete it and re-dump"
            ) from error

    def _read_meta(self) -> BankMeta:
        attrs = self._file.attrs
        if "schema_version" not in attrs:
            raise FeaturesError(f"{self.path}: not a tailbank bank (no schema_version attribute)")
        version = self._int_attr("schema_version")
        if version != SCHEMA_VERSION:
            raise FeaturesError(
                f"{self.path}: schema_version {version} but this tailbank reads "
                f"{SCHEMA_VERSION}; re-dump the bank with this version"
            )
        values = {name: self._string_attr(name) for name in _STRING_ATTRS}
        values |= {name: self._int_attr(name) for name in _INT_ATTRS}
        meta = BankMeta(
            class_counts=self._class_counts(values["num_classes"]),
            class_names=self._class_names(values["num_classes"]),
            **values,
        )
        _check_meta(meta, str(self.path))
        return meta

    def _string_attr(self, name: str) -> str:
        # Checked before reading: a variable-length string would be read from the global
        # heap, whose damage HDF5 cannot detect.
        if not self._attr_type_is(name, _is_fixed_utf8):
            raise FeaturesError(
                f"{self.path}: attribute {name!r} is not a fixed-length UTF-8 string; re-dump"
            )
        return bytes(self._file.attrs[name]).decode("utf-8")

    def _int_attr(self, name: str) -> int:
        if not self._attr_type_is(name, lambda dtype: dtype.kind in "iu"):
            raise FeaturesError(f"{self.path}: attribute {name!r} is not an integer; re-dump")
        return int(self._file.attrs[name])

    def _attr_type_is(self, name: str, accepts: Callable[[np.dtype], bool]) -> bool:
        """Whether scalar attribute `name`, which must exist, has a dtype that `accepts`."""
        if name not in self._file.attrs:
            raise FeaturesError(f"{self.path}: attribute {name!r} is missing; re-dump the bank")
        attribute = self._file.attrs.get_id(name)
        return attribute.shape == () and accepts(attribute.dtype)

    def _class_counts(self, num_classes: int) -> np.ndarray:
        counts = self._root_dataset("class_counts")
        if counts.dtype != np.int64 or counts.shape != (num_classes,):
            raise FeaturesError(
                f"{self.path}:class_counts: expected int64 [{num_classes}], got "
                f"{counts.dtype} {counts.shape}; re-dump the bank"
            )
        return counts[...]

    def _class_names(self, num_classes: int) -> tuple[str, ...] | None:
        if "class_names" not in self._file:
            return None
        names = self._root_dataset("class_names")
        if not _is_fixed_utf8(names.dtype) or names.shape != (num_classes,):
            raise FeaturesError(
                f"{self.path}:class_names: expected {num_classes} fixed-length UTF-8 strings, got "
                f"{names.dtype} {names.shape}; re-dump the bank"
            )
        return tuple(names.asstr()[...])

    def _root_dataset(self, name: str) -> h5py.Dataset:
        item = self._file.get(name)
        if not isinstance(item, h5py.Dataset):
            raise FeaturesError(f"{self.path}: dataset {name!r} is missing; re-dump the bank")
        return item

    def _validate_splits(self) -> None:
        for split in self.splits:
            group = self._file[split]
            if not isinstance(group, h5py.Group):
                raise FeaturesError(f"{self.path}:{split}: is not a group; re-dump the bank")
            specs = self._expected_specs(group, split)
            lengths = {
                name: self._checked_dataset(group, split, name, spec).shape[0]
                for name, spec in specs.items()
            }
            if len(set(lengths.values())) != 1:
                raise FeaturesError(f"{self.path}:{split}: datasets differ in length: {lengths}")

    def _expected_specs(self, group: h5py.Group, split: str) -> dict[str, tuple]:
        """Maps each dataset of a split to (dtype, row shape); None = any width."""
        specs: dict[str, tuple] = {
            "features": (np.float32, (self.meta.feature_dim,)),
            "labels": (np.int64, ()),
            "index": (np.int64, ()),
        }
        if "logits" in group:
            specs["logits"] = (np.float32, (self.meta.num_classes,))
        if "extra" in group:
            if not isinstance(group["extra"], h5py.Group):
                raise FeaturesError(f"{self.path}:{split}/extra: is not a group; re-dump")
            for name in group["extra"]:
                specs[f"extra/{name}"] = (np.float32, None)
        unexpected = set(group) - {"extra"} - set(specs)
        if unexpected:
            raise FeaturesError(
                f"{self.path}:{split}: unexpected datasets {sorted(unexpected)}; not a bank "
                f"of schema {SCHEMA_VERSION}"
            )
        return specs

    def _checked_dataset(
        self, group: h5py.Group, split: str, name: str, spec: tuple
    ) -> h5py.Dataset:
        dtype, row_shape = spec
        item = group.get(name)
        where = f"{self.path}:{split}/{name}"
        if not isinstance(item, h5py.Dataset):
            raise FeaturesError(f"{where}: dataset is missing; re-dump the bank")
        shape_ok = len(item.shape) >= 1 and (
            item.shape[1:] == row_shape if row_shape is not None else len(item.shape) == 2
        )
        if item.dtype != dtype or not shape_ok:
            expected = {None: "[N, D']", (): "[N]"}.get(
                row_shape, f"[N, {', '.join(map(str, row_shape or ()))}]"
            )
            raise FeaturesError(
                f"{where}: expected {np.dtype(dtype)} {expected}, got {item.dtype} {item.shape}; "
                "re-dump the bank"
            )
        return item

    def _checked_values(self, split: str, field: str, values: np.ndarray) -> np.ndarray:
        """Refuse NaN or infinite floats and labels outside [0, C) in what a read returns.

        Checking what is read, rather than scanning the bank when it opens, costs one pass
        over data that is already in memory instead of a second read of the whole file.
        """
        if field == "labels":
            if values.size and (values.min() < 0 or values.max() >= self.meta.num_classes):
                raise FeaturesError(
                    f"{self.path}:{split}/labels: labels outside [0, {self.meta.num_classes}); "
                    "re-dump the bank"
                )
        elif values.dtype.kind == "f" and not np.isfinite(values).all():
            raise FeaturesError(
                f"{self.path}:{split}/{field}: contains NaN or inf; re-dump the bank"
            )
        return values


def position_vector(positions: np.ndarray, name: str) -> np.ndarray:
    """An int64 copy of a 1-D array of row positions; floats, booleans (a mask is not a list
    of positions) and other shapes are refused in one line naming `name`."""
    array = np.asarray(positions)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise FeaturesError(
            f"{name}: expected a 1-D array of integer positions, got {array.dtype} {array.shape}"
        )
    return array.astype(np.int64, copy=False)


def _chunk_runs(chunk_ids: np.ndarray, max_chunks: int) -> Iterator[tuple[int, int]]:
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


def _default_rows(dataset: h5py.Dataset) -> int:
    """The HDF5 chunk height, or ~1 MiB of rows for an unchunked dataset."""
    if dataset.chunks is not None:
        return dataset.chunks[0]
    row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
    return _chunk_rows(row_bytes, 1 << 20)


def _is_fixed_utf8(dtype: np.dtype) -> bool:
    info = h5py.check_string_dtype(dtype)
    return info is not None and info.encoding == "utf-8" and info.length is not None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
