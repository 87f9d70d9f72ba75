"""Which images form the train, val and test splits, and how that is saved as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.splits import SPLITS
from pipeline.data.dataset_source import DatasetSource
from pipeline.errors import PipelineError

SPLIT_NAMES: tuple[str, ...] = SPLITS  # the name this package has always exported


@dataclass(frozen=True)
class SplitPart:
    """One split: which pool its images come from and which positions in that pool.

    Attributes:
        pool: a key of :attr:`DatasetSource.pools`.
        indices: int64 [N], sorted positions in the pool.
    """

    pool: str
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def labels(self, source: DatasetSource) -> np.ndarray:
        """The labels of this split's images.

        Args:
            source: the dataset the split was made from.

        Returns:
            int64 [N].
        """
        return source.pools[self.pool].labels[self.indices]


@dataclass(frozen=True)
class Splits:
    """The three splits of one dataset and the training frequency of each class.

    Attributes:
        dataset: the dataset's name.
        num_classes: C.
        train: the long-tailed training split.
        val: the balanced split model selection uses.
        test: the split results are reported on (never used for selection).
        class_counts: int64 [C], number of training images of each class.
    """

    dataset: str
    num_classes: int
    train: SplitPart
    val: SplitPart
    test: SplitPart
    class_counts: np.ndarray

    def part(self, split: str) -> SplitPart:
        """The :class:`SplitPart` called ``split`` (one of :data:`SPLIT_NAMES`)."""
        if split not in SPLIT_NAMES:
            raise PipelineError(f"unknown split '{split}': valid are {', '.join(SPLIT_NAMES)}")
        return getattr(self, split)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a fixed key order, so equal splits give equal bytes."""
        return {
            "dataset": self.dataset,
            "num_classes": int(self.num_classes),
            "class_counts": [int(count) for count in self.class_counts],
            **{
                split: {
                    "pool": self.part(split).pool,
                    "indices": [int(index) for index in self.part(split).indices],
                }
                for split in SPLIT_NAMES
            },
        }

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> Splits:
        """Rebuild splits saved by :meth:`to_dict`, checking every field.

        Args:
            data: the parsed JSON.
            origin: where it came from (a file path), named in error messages.

        Returns:
            The splits.

        Raises:
            PipelineError: a missing key, a wrong type or inconsistent indices.
        """
        _expect(isinstance(data, dict), origin, "is not a JSON object")
        dataset = _field(data, "dataset", str, origin)
        num_classes = _field(data, "num_classes", int, origin)
        _expect(num_classes >= 1, origin, "'num_classes' must be positive")
        class_counts = _int_array(
            _field(data, "class_counts", list, origin), "class_counts", origin
        )
        _expect(
            len(class_counts) == num_classes and bool(np.all(class_counts >= 0)),
            origin,
            f"'class_counts' must hold {num_classes} non-negative counts",
        )
        parts = {
            split: _part_from_dict(_field(data, split, dict, origin), split, origin)
            for split in SPLIT_NAMES
        }
        _expect(
            int(class_counts.sum()) == len(parts["train"]),
            origin,
            f"'class_counts' sums to {int(class_counts.sum())} but 'train' has "
            f"{len(parts['train'])} images",
        )
        _check_disjoint(parts, origin)
        return cls(dataset=dataset, num_classes=num_classes, class_counts=class_counts, **parts)

    @classmethod
    def read(cls, path: Path, source: DatasetSource | None, fix: str) -> Splits:
        """Read a splits file written from :meth:`to_dict`; checked against ``source`` when
        given (its dataset, pools, index range and class counts), so a splits file of other
        data is refused before any work.

        Args:
            path: the JSON file.
            source: the dataset as loaded now, or None to skip that check.
            fix: how the user gets a good file, for the message when it is not JSON.

        Raises:
            PipelineError: the file is not JSON, not splits, or not splits of ``source``.
        """
        try:
            payload = json.loads(path.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PipelineError(f"{path}: not valid JSON; {fix}") from None
        splits = cls.from_dict(payload, origin=str(path))
        if source is not None:
            splits.check_against(source, origin=str(path))
        return splits

    def check_against(self, source: DatasetSource, origin: str) -> None:
        """Check that these splits were made from ``source`` (pools, positions, counts).

        Args:
            source: the dataset as loaded now.
            origin: where the splits came from, named in error messages.

        Raises:
            PipelineError: the splits do not fit the dataset, e.g. after the data changed.
        """
        _expect(
            self.dataset == source.name and self.num_classes == source.num_classes,
            origin,
            f"was made for {self.dataset} with {self.num_classes} classes, not {source.name} "
            f"with {source.num_classes}",
        )
        for split in SPLIT_NAMES:
            part = self.part(split)
            _expect(part.pool in source.pools, origin, f"'{split}' uses unknown pool '{part.pool}'")
            pool_size = len(source.pools[part.pool])
            _expect(
                len(part) == 0 or int(part.indices[-1]) < pool_size,
                origin,
                f"'{split}' points past the {pool_size} images of pool '{part.pool}'",
            )
        counts = np.bincount(self.train.labels(source), minlength=source.num_classes)
        _expect(
            np.array_equal(counts, self.class_counts),
            origin,
            "'class_counts' differ from the labels of the training images",
        )


def _expect(condition: bool, origin: str, problem: str) -> None:
    if not condition:
        raise PipelineError(
            f"splits file `{origin}` {problem}; delete it and make the splits again"
        )


def _field(data: dict[str, Any], key: str, kind: type, origin: str) -> Any:
    _expect(key in data, origin, f"has no '{key}' entry")
    value = data[key]
    # bool is an int subclass in Python, but never a valid count or index here.
    valid = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    _expect(valid, origin, f"'{key}' should be of type {kind.__name__}")
    return value


def _int_array(values: list[Any], key: str, origin: str) -> np.ndarray:
    valid = all(isinstance(value, int) and not isinstance(value, bool) for value in values)
    _expect(valid, origin, f"'{key}' must hold integers only")
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _part_from_dict(data: dict[str, Any], split: str, origin: str) -> SplitPart:
    pool = _field(data, "pool", str, origin)
    indices = _int_array(_field(data, "indices", list, origin), f"{split}.indices", origin)
    _expect(
        bool(np.all(indices >= 0)) and bool(np.all(np.diff(indices) > 0)),
        origin,
        f"'{split}.indices' must be non-negative and strictly increasing",
    )
    return SplitPart(pool=pool, indices=indices)


def _check_disjoint(parts: dict[str, SplitPart], origin: str) -> None:
    for position, first in enumerate(SPLIT_NAMES):
        for second in SPLIT_NAMES[position + 1 :]:
            same_pool = parts[first].pool == parts[second].pool
            shared = np.intersect1d(parts[first].indices, parts[second].indices)
            _expect(
                not same_pool or len(shared) == 0,
                origin,
                f"'{first}' and '{second}' share {len(shared)} images",
            )
