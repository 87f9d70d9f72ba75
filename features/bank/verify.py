"""Verification of a bank as it opens: its attributes, the dtype and shape of its datasets and
their digest tables.

Everything here reads metadata (HDF5 checksums it) and the small digest tables (Fletcher-32);
the rows themselves are verified chunk by chunk against those digests by each read, which
costs one pass over data already in memory instead of a second read of the whole file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from features.bank.digest import DIGEST_DTYPE
from features.bank.schema import (
    INT_ATTRS,
    OPTIONAL_STRING_ATTRS,
    SCHEMA_VERSION,
    STRING_ATTRS,
    BankMeta,
    check_meta,
    digest_path,
    is_fixed_utf8,
)
from features.errors import FeaturesError


def read_meta(path: Path, file: h5py.File) -> BankMeta:
    """The bank's attributes, checked against the schema version this tailbank writes.

    Args:
        path: The bank's file, for the messages.
        file: The open file.

    Returns:
        The attributes, class counts and class names of the bank.

    Raises:
        FeaturesError: no or another schema_version, an attribute missing or of the wrong
            type, class_counts or class_names of the wrong dtype or shape.
    """
    attrs = file.attrs
    if "schema_version" not in attrs:
        raise FeaturesError(f"{path}: not a tailbank bank (no schema_version attribute)")
    version = _int_attr(path, attrs, "schema_version")
    if version != SCHEMA_VERSION:
        # Versions 1 (Fletcher-32 chunks, no digests) and 2 (a slower digest) are not read:
        # dump rewrites a bank, and one read path keeps every read verified the same way.
        raise FeaturesError(
            f"{path}: schema_version {version} but this tailbank reads {SCHEMA_VERSION} "
            "(per-chunk XXH3 digests); re-run `tailbank dump` (or `tailbank import-bank`) to "
            "rewrite the bank"
        )
    values = {name: _string_attr(path, attrs, name) for name in STRING_ATTRS}
    values |= {name: _int_attr(path, attrs, name) for name in INT_ATTRS}
    # a bank of features or a network from elsewhere says where they came from
    values |= {name: _string_attr(path, attrs, name) for name in OPTIONAL_STRING_ATTRS
               if name in attrs}
    meta = BankMeta(
        class_counts=_class_counts(path, file, values["num_classes"]),
        class_names=_class_names(path, file, values["num_classes"]),
        **values,
    )
    check_meta(meta, str(path))
    return meta


# The helpers take the file's attribute manager, fetched once: each `file.attrs` opens the
# root group again, which was most of the time `Bank.open` took.
def _string_attr(path: Path, attrs: h5py.AttributeManager, name: str) -> str:
    # Checked before reading: a variable-length string would be read from the global
    # heap, whose damage HDF5 cannot detect.
    if not _attr_type_is(path, attrs, name, is_fixed_utf8):
        raise FeaturesError(
            f"{path}: attribute {name!r} is not a fixed-length UTF-8 string; re-dump"
        )
    return bytes(attrs[name]).decode("utf-8")


def _int_attr(path: Path, attrs: h5py.AttributeManager, name: str) -> int:
    if not _attr_type_is(path, attrs, name, lambda dtype: dtype.kind in "iu"):
        raise FeaturesError(f"{path}: attribute {name!r} is not an integer; re-dump")
    return int(attrs[name])


def _attr_type_is(
    path: Path, attrs: h5py.AttributeManager, name: str, accepts: Callable[[np.dtype], bool]
) -> bool:
    """Whether scalar attribute `name`, which must exist, has a dtype that `accepts`."""
    if name not in attrs:
        raise FeaturesError(f"{path}: attribute {name!r} is missing; re-dump the bank")
    attribute = attrs.get_id(name)
    return attribute.shape == () and accepts(attribute.dtype)


def _class_counts(path: Path, file: h5py.File, num_classes: int) -> np.ndarray:
    counts = _root_dataset(path, file, "class_counts")
    if counts.dtype != np.int64 or counts.shape != (num_classes,):
        raise FeaturesError(
            f"{path}:class_counts: expected int64 [{num_classes}], got "
            f"{counts.dtype} {counts.shape}; re-dump the bank"
        )
    return counts[...]


def _class_names(path: Path, file: h5py.File, num_classes: int) -> tuple[str, ...] | None:
    if "class_names" not in file:
        return None
    names = _root_dataset(path, file, "class_names")
    if not is_fixed_utf8(names.dtype) or names.shape != (num_classes,):
        raise FeaturesError(
            f"{path}:class_names: expected {num_classes} fixed-length UTF-8 strings, got "
            f"{names.dtype} {names.shape}; re-dump the bank"
        )
    return tuple(names.asstr()[...])


def _root_dataset(path: Path, file: h5py.File, name: str) -> h5py.Dataset:
    item = file.get(name)
    if not isinstance(item, h5py.Dataset):
        raise FeaturesError(f"{path}: dataset {name!r} is missing; re-dump the bank")
    return item


def validate_splits(
    path: Path, file: h5py.File, meta: BankMeta, splits: tuple[str, ...]
) -> dict[tuple[str, str], np.ndarray]:
    """Checks every dataset of each split: present, dtype, row shape, equal lengths, chunked
    without filters, and a digest table with one digest per chunk.

    Values are not scanned here: each read verifies the chunks it touches.

    Returns:
        (split, field) -> uint64 [chunks], the digest of each chunk of that dataset.

    Raises:
        FeaturesError: a missing, unexpected or mistyped dataset or digest table, or
            datasets of one split that differ in length.
    """
    digests: dict[tuple[str, str], np.ndarray] = {}
    for split in splits:
        group = file[split]
        if not isinstance(group, h5py.Group):
            raise FeaturesError(f"{path}:{split}: is not a group; re-dump the bank")
        specs = _expected_specs(path, meta, group, split)
        lengths = {}
        for name, spec in specs.items():
            dataset = _checked_dataset(path, group, split, name, spec)
            lengths[name] = dataset.shape[0]
            digests[split, name] = _digest_table(path, file, dataset, split, name)
        if len(set(lengths.values())) != 1:
            raise FeaturesError(f"{path}:{split}: datasets differ in length: {lengths}")
    return digests


def _digest_table(
    path: Path, file: h5py.File, dataset: h5py.Dataset, split: str, name: str
) -> np.ndarray:
    """The digests of a row dataset's chunks, after checking the dataset is chunked without
    filters (the reader moves raw chunks) and the table has one uint64 per chunk."""
    where = f"{path}:{split}/{name}"
    if dataset.chunks is None or dataset.id.get_create_plist().get_nfilters() != 0:
        raise FeaturesError(
            f"{where}: not stored as unfiltered chunks, as schema {SCHEMA_VERSION} writes; "
            "re-run `tailbank dump`"
        )
    table = file.get(digest_path(split, name))
    chunks = math.ceil(dataset.shape[0] / dataset.chunks[0])
    if not isinstance(table, h5py.Dataset) or table.dtype != DIGEST_DTYPE or (
        table.shape != (chunks,)
    ):
        raise FeaturesError(
            f"{where}: its digest table {digest_path(split, name)} is missing or does not "
            f"hold {chunks} uint64 digests; the bank is damaged: re-run `tailbank dump`"
        )
    return table[...]


def _expected_specs(
    path: Path, meta: BankMeta, group: h5py.Group, split: str
) -> dict[str, tuple]:
    """Maps each dataset of a split to (dtype, row shape); None = any width."""
    specs: dict[str, tuple] = {
        "features": (np.float32, (meta.feature_dim,)),
        "labels": (np.int64, ()),
        "index": (np.int64, ()),
    }
    if "logits" in group:
        specs["logits"] = (np.float32, (meta.num_classes,))
    if "extra" in group:
        if not isinstance(group["extra"], h5py.Group):
            raise FeaturesError(f"{path}:{split}/extra: is not a group; re-dump")
        for name in group["extra"]:
            specs[f"extra/{name}"] = (np.float32, None)
    unexpected = set(group) - {"extra"} - set(specs)
    if unexpected:
        raise FeaturesError(
            f"{path}:{split}: unexpected datasets {sorted(unexpected)}; not a bank "
            f"of schema {SCHEMA_VERSION}"
        )
    return specs


def _checked_dataset(
    path: Path, group: h5py.Group, split: str, name: str, spec: tuple
) -> h5py.Dataset:
    dtype, row_shape = spec
    item = group.get(name)
    where = f"{path}:{split}/{name}"
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
