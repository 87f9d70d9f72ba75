"""The bank's schema, version 3: its layout, its attributes (`BankMeta`) and their checks.

Layout of a bank (see DESIGN.md, "Feature bank")::

    attrs                  schema_version + every scalar field of `BankMeta` (source_kind and
                           source only in a bank from elsewhere)
    class_counts           int64   [C]
    class_names            utf-8   [C]      (optional)
    <split>/features       float32 [N, D]
    <split>/labels         int64   [N]
    <split>/index          int64   [N]
    <split>/logits         float32 [N, C]   (optional)
    <split>/extra/<name>   float32 [N, D']  (optional)
    digests/<split>/<field> uint64  [ceil(N / chunk rows)]  one per chunk of each dataset above

The row datasets are chunked without filters; each chunk is verified on read against its
digest (`features.bank.digest`). The small datasets (class_counts, class_names, the digest
tables) keep HDF5's Fletcher-32 filter, which costs nothing at their size.

Version 1 put Fletcher-32 on every dataset and had no digests. Its checksum ran at about
2 GB/s and took half of every read and write. Version 2 had the same layout as version 3 with
another digest, a weighted sum of 64-bit words that held a verified read at 0.6 of `np.load`
(`features.bank.digest` says why XXH3 replaced it). Banks of an older version are refused
with a message to re-run `tailbank dump` rather than kept readable, since a bank is a pipeline
output that dump rewrites.

The writer (`features.bank.writer`) and the reader (`features.bank.reader`) both follow what
this module fixes: the attribute names and their order, the pinned HDF5 format and the string
type, so the same appends give the same bytes and a reader refuses anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata

import h5py
import numpy as np

from features.errors import FeaturesError

SCHEMA_VERSION = 3
# Group of the per-chunk digest tables, which mirror the paths of the row datasets.
DIGESTS = "digests"

# Pinned so that the bytes of a bank do not depend on the HDF5 release's defaults; 1.10 objects
# carry checksums on all metadata.
LIBVER = ("v110", "v110")
STRING_ATTRS = (
    "method",
    "backbone",
    "dataset",
    "params_digest",
    "checkpoint_sha256",
    "augment",
    "tailbank_version",
)
INT_ATTRS = ("num_classes", "feature_dim", "seed")
# Written only when set: a bank `dump` makes from a trained method has neither, so its bytes
# are those of every bank before features from elsewhere could be imported.
OPTIONAL_STRING_ATTRS = ("source_kind", "source")
SOURCE_KINDS = ("imported", "checkpoint")


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
        source_kind: None for a bank of a method tailbank trained; "imported" for features
            computed elsewhere (`tailbank import-bank`; then `checkpoint_sha256` is the sha256
            of the features file), "checkpoint" for a network trained elsewhere (`tailbank
            dump --checkpoint`).
        source: The file the features or the network came from (None with `source_kind`).
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
    source_kind: str | None = None
    source: str | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BankMeta):
            return NotImplemented
        return _meta_key(self) == _meta_key(other)

    def __hash__(self) -> int:
        return hash(_meta_key(self))


def _meta_key(meta: BankMeta) -> tuple:
    # class_counts is an array: compared by value, as the tuple of its counts
    scalars = tuple(
        getattr(meta, name) for name in STRING_ATTRS + INT_ATTRS + OPTIONAL_STRING_ATTRS
    )
    counts = tuple(int(count) for count in np.asarray(meta.class_counts).ravel())
    return scalars + (counts, meta.class_names)


def check_meta(meta: BankMeta, where: str) -> None:
    """Refuses attributes a bank cannot hold, in one line naming `where` and the field."""
    for name in STRING_ATTRS:
        if not isinstance(getattr(meta, name), str):
            raise FeaturesError(f"{where}: BankMeta.{name} must be a str; pass a string")
    _check_source(meta, where)
    for name in INT_ATTRS:
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


def _check_source(meta: BankMeta, where: str) -> None:
    """The optional provenance of a bank from elsewhere: both fields or neither."""
    if (meta.source_kind is None) != (meta.source is None):
        raise FeaturesError(
            f"{where}: BankMeta.source_kind and source go together; set both or neither"
        )
    if meta.source_kind is None:
        return
    if meta.source_kind not in SOURCE_KINDS or not isinstance(meta.source, str):
        raise FeaturesError(
            f"{where}: BankMeta.source_kind must be one of {SOURCE_KINDS} with a str source, "
            f"got {meta.source_kind!r}; pass one of them"
        )


def digest_path(split: str, field: str) -> str:
    """Path of the digest table of dataset `<split>/<field>` (field may be `extra/<name>`)."""
    return f"{DIGESTS}/{split}/{field}"


def chunk_rows(row_bytes: int, chunk_bytes: int) -> int:
    """Rows of `row_bytes` bytes that fill one chunk of `chunk_bytes` bytes (at least 1)."""
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
        5 % and 1 MiB for chunk digests, headers and the attributes.
    """
    per_row = 4 * (meta.feature_dim + (meta.num_classes if logits else 0) + extra_width) + 16
    data = per_row * sum(int(rows) for rows in split_sizes.values())
    return int(data * 1.05) + (1 << 20)


def is_fixed_utf8(dtype: np.dtype) -> bool:
    """Whether an HDF5 dtype is a fixed-length UTF-8 string (the only strings a bank holds)."""
    info = h5py.check_string_dtype(dtype)
    return info is not None and info.encoding == "utf-8" and info.length is not None
