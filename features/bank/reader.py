"""The validating reader of a bank: whole datasets, consecutive blocks and gathered rows.

`Bank.open` checks the attributes, every dataset's dtype and shape and loads the per-chunk
digest tables (`features.bank.verify`); each read then verifies every chunk it touches
against its digest while streaming it in (`features.bank.chunkio`), and checks labels lie in
[0, C). Any failure, including a damaged file, is one `FeaturesError` line naming the file,
the dataset and what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import h5py
import numpy as np

from core.splits import SPLITS
from features.bank.chunkio import ChunkSource, read_verified
from features.bank.chunks import GATHER_CHUNKS, chunk_runs, default_rows, position_vector
from features.bank.verify import read_meta, validate_splits
from features.errors import FeaturesError

_T = TypeVar("_T")
# h5py, numpy and the HDF5 library signal a damaged file through any of these.
READ_ERRORS = (
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
        self.meta = self._guard(lambda: read_meta(path, file))
        self.splits = tuple(split for split in SPLITS if split in file)
        self._digests: dict[tuple[str, str], np.ndarray] = {}
        # each dataset's chunk offsets, looked up on its first read
        self._sources: dict[tuple[str, str], ChunkSource | None] = {}

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
        except READ_ERRORS as error:
            raise FeaturesError(
                f"{path}: not a readable HDF5 bank ({_one_line(error)}); delete it and re-dump"
            ) from error
        try:
            bank = cls(path, file)
            bank._digests = bank._guard(
                lambda: validate_splits(path, file, bank.meta, bank.splits)
            )
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
        self._sources.clear()  # their descriptor is the file's, closed here
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
        step = rows if rows is not None else self._guard(lambda: default_rows(dataset))
        if step < 1:
            raise FeaturesError(f"{self.path}: rows must be >= 1, got {step}")
        total = self._guard(lambda: dataset.shape[0])
        for start in range(0, total, step):
            yield self._rows(split, field, start, start + step)

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
        return self._rows(split, field, start, stop)

    def gather(self, split: str, field: str, positions: np.ndarray) -> np.ndarray:
        """Rows at `positions` (any order, repeats allowed), reading each HDF5 chunk once.

        The wanted rows are sorted, grouped into runs of neighbouring chunks of at most
        `GATHER_CHUNKS` chunks, and each run is read with one slice: a random subset of a
        chunked, verified dataset costs one pass over the chunks it touches instead of
        one HDF5 call per row.

        Args:
            split: One of `self.splits`.
            field: `features`, `labels`, `index`, `logits` or `extra/<name>`.
            positions: int [B], row positions in [0, N).

        Returns:
            [B, ...] rows in the order of `positions`.
        """
        dataset = self._dataset(split, field)
        total, chunk = self._guard(lambda: (dataset.shape[0], default_rows(dataset)))
        wanted = position_vector(positions, f"{self.path}:{split}/{field}: row positions")
        if wanted.size and (wanted.min() < 0 or wanted.max() >= total):
            raise FeaturesError(
                f"{self.path}:{split}/{field}: row positions must lie in [0, {total})"
            )
        unique, inverse = np.unique(wanted, return_inverse=True)
        rows = np.empty((len(unique), *dataset.shape[1:]), dtype=dataset.dtype)
        for begin, end in chunk_runs(unique // chunk, GATHER_CHUNKS):
            first = int(unique[begin] // chunk) * chunk
            last = min((int(unique[end - 1] // chunk) + 1) * chunk, total)
            block = self._verified(split, field, first, last)
            rows[begin:end] = block[unique[begin:end] - first]
        return self._checked_values(split, field, rows)[inverse.reshape(-1)]

    def _read(self, split: str, field: str) -> np.ndarray:
        return self._rows(split, field, 0, self.size(split))

    def _rows(self, split: str, field: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) (clipped to the dataset), verified and checked."""
        return self._checked_values(split, field, self._verified(split, field, start, stop))

    def _verified(self, split: str, field: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop), every chunk they touch verified against its digest."""
        dataset = self._dataset(split, field)
        digests = self._digests[split, field]

        def refuse(first: int, last: int) -> FeaturesError:
            return FeaturesError(
                f"{self.path}:{split}/{field}: rows {first}-{last} do not match their "
                "checksum (the file was damaged or changed after it was written); delete it "
                "and re-run `tailbank dump`"
            )

        def read() -> np.ndarray:
            if (split, field) not in self._sources:
                self._sources[split, field] = ChunkSource.of(dataset)
            source = self._sources[split, field]
            return read_verified(dataset, digests, start, stop, refuse, source)

        return self._guard(read)

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
        except READ_ERRORS as error:
            raise FeaturesError(
                f"{self.path}: damaged or foreign bank ({_one_line(error)}); delete it and re-dump"
            ) from error

    def _checked_values(self, split: str, field: str, values: np.ndarray) -> np.ndarray:
        """Refuse labels outside [0, C) in what a read returns.

        Floats are not scanned for NaN/inf here: `BankWriter` refuses non-finite values, and
        a chunk that matches its digest holds exactly the bytes the writer checked, so the
        scan (a third of the cost of a read) would never fire on a bank that verified. The
        label range stays checked: it is cheap, and a label out of range would index past
        every per-class array downstream.
        """
        if field == "labels" and values.size and (
            values.min() < 0 or values.max() >= self.meta.num_classes
        ):
            raise FeaturesError(
                f"{self.path}:{split}/labels: labels outside [0, {self.meta.num_classes}); "
                "re-dump the bank"
            )
        return values


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
