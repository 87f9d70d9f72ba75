"""Features computed elsewhere, read and checked before they become a bank (`import-bank`).

The input contract: one source holds, for each split of `SPLITS` (train, val and test), the
keys ``<split>_features`` (float [N, D]) and ``<split>_labels`` (int [N], in [0, C)), and
optionally ``<split>_logits`` (float [N, C], a head of the network's own) and
``<split>_index`` (int [N], each row's position in the user's own split; default 0..N-1), and
at most these global keys: ``class_names`` (str [C]) and ``num_classes`` (int, scalar;
default: the largest label + 1). The training frequency of each class is counted from
``train_labels``. A source is one of

- a ``.npz`` file (``np.savez(path, train_features=..., ...)``), read with
  ``allow_pickle=False``;
- a ``.pt`` / ``.pth`` file holding a dict of tensors under the same keys (class_names a list
  of str, num_classes an int), read with ``torch.load(weights_only=True)``;
- a folder of ``<key>.npy`` files, one per key, read with ``allow_pickle=False``.

Neither reader unpickles objects, so a crafted file can be refused but cannot run code. Every
refusal is one line naming the file, the key and the fix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.names import did_you_mean
from core.splits import SPLITS
from features.errors import FeaturesError

ARRAY_FIELDS = ("features", "labels", "logits", "index")
REQUIRED_FIELDS = ("features", "labels")
GLOBAL_KEYS = ("class_names", "num_classes")
KNOWN_KEYS: tuple[str, ...] = (
    tuple(f"{split}_{name}" for split in SPLITS for name in ARRAY_FIELDS) + GLOBAL_KEYS
)
SUFFIXES = (".npz", ".pt", ".pth")


@dataclass(frozen=True)
class ImportedSplit:
    """The checked rows of one split.

    Attributes:
        features: float32 [N, D], finite.
        labels: int64 [N], in [0, C).
        index: int64 [N], each row's position in the user's split.
        logits: float32 [N, C], finite, or None.
    """

    features: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    logits: np.ndarray | None


@dataclass(frozen=True)
class ImportedFeatures:
    """A checked feature source, ready for `features.bank.BankWriter`.

    Attributes:
        splits: split -> its rows, for each of `SPLITS`.
        num_classes: C.
        class_counts: int64 [C], training frequency of each class (from train_labels).
        class_names: C names, or None.
        sha256: digest of the source (of each file's name and digest, for a folder).
    """

    splits: dict[str, ImportedSplit]
    num_classes: int
    class_counts: np.ndarray
    class_names: tuple[str, ...] | None
    sha256: str

    @property
    def feature_dim(self) -> int:
        """D, the width of the features."""
        return int(self.splits["train"].features.shape[1])


def read_imported(path: Path) -> ImportedFeatures:
    """Read and check a feature source (see the module docstring for the contract).

    Args:
        path: a ``.npz``, ``.pt``/``.pth`` file or a folder of ``<key>.npy`` files.

    Returns:
        Its splits, checked and converted to the bank's dtypes.

    Raises:
        FeaturesError: one line naming the file and key, and the fix: an unreadable or
            pickled file, an unknown or missing key, a wrong dtype or shape, lengths that
            differ, non-finite values, labels out of range.
    """
    raw = _load(path)
    _check_keys(path, raw)
    num_classes = _num_classes(path, raw)
    with_logits = [split for split in SPLITS if f"{split}_logits" in raw]
    if with_logits and len(with_logits) != len(SPLITS):
        missing = next(split for split in SPLITS if split not in with_logits)
        raise FeaturesError(f"{path}: key '{missing}_logits' is missing but {with_logits[0]}"
                            "_logits is given; give logits for every split or for none")
    splits = {split: _split(path, raw, split, num_classes) for split in SPLITS}
    widths = {split: rows.features.shape[1] for split, rows in splits.items()}
    if len(set(widths.values())) != 1:
        raise FeaturesError(f"{path}: the splits' features differ in width {widths}; give "
                            "every split features of the same network layer")
    counts = np.bincount(splits["train"].labels, minlength=num_classes).astype(np.int64)
    return ImportedFeatures(splits, num_classes, counts, _class_names(path, raw, num_classes),
                            _source_sha256(path))


def _load(path: Path) -> dict[str, Any]:
    """Every key of the source, as NumPy arrays or (from a .pt) plain values."""
    if path.is_dir():
        return _load_folder(path)
    if not path.is_file():
        raise FeaturesError(f"{path}: not found; give a .npz, .pt or a folder of .npy files")
    if path.suffix == ".npz":
        return _load_npz(path)
    if path.suffix in (".pt", ".pth"):
        return _load_torch(path)
    raise FeaturesError(f"{path}: unknown suffix {path.suffix!r}; give one of {SUFFIXES} or a "
                        "folder of <key>.npy files")


def _load_npz(path: Path) -> dict[str, Any]:
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # a truncated or foreign zip raises many types
        raise FeaturesError(f"{path}: not a readable .npz ({type(error).__name__}); save it "
                            "with numpy.savez") from None
    with archive:
        return {key: _read_array(path, key, lambda key=key: archive[key]) for key in archive}


def _load_folder(path: Path) -> dict[str, Any]:
    files = sorted(path.glob("*.npy"))
    if not files:
        raise FeaturesError(f"{path}: a folder without .npy files; save each key as "
                            "<key>.npy (train_features.npy, train_labels.npy, ...)")
    return {file.stem: _read_array(file, file.stem,
                                   lambda file=file: np.load(file, allow_pickle=False))
            for file in files}


def _read_array(path: Path, key: str, load: Any) -> np.ndarray:
    """One array, refusing object arrays (pickles) and damaged data in one line."""
    try:
        return np.asarray(load())
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise FeaturesError(f"{path}:{key}: an object array, which would be unpickled; "
                                "save plain numeric (or, for class_names, str) arrays") from None
        raise FeaturesError(f"{path}:{key}: unreadable array ({error}); save it again") from None
    except Exception as error:  # truncated data, bad header, ...
        raise FeaturesError(f"{path}:{key}: unreadable array ({type(error).__name__}); save "
                            "it again") from None


def _load_torch(path: Path) -> dict[str, Any]:
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses callables with UnpicklingError
        raise FeaturesError(
            f"{path}: not loadable with torch.load(weights_only=True) "
            f"({type(error).__name__}); save a dict of tensors only"
        ) from None
    if not isinstance(payload, Mapping) or not all(isinstance(key, str) for key in payload):
        raise FeaturesError(f"{path}: holds a {type(payload).__name__}, not a dict of tensors "
                            "by key; save {'train_features': tensor, ...}")
    return {key: _from_torch(path, key, value) for key, value in payload.items()}


def _from_torch(path: Path, key: str, value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if key == "class_names" and isinstance(value, list | tuple):
        return np.asarray(value, dtype=str) if all(isinstance(v, str) for v in value) else value
    if key == "num_classes":
        return np.asarray(value) if isinstance(value, int) else value
    raise FeaturesError(f"{path}:{key}: a {type(value).__name__}, not a tensor; save it as a "
                        "torch.Tensor")


def _check_keys(path: Path, raw: Mapping[str, Any]) -> None:
    for key in raw:
        if key not in KNOWN_KEYS:
            raise FeaturesError(f"{path}:{key}: unknown key{did_you_mean(key, KNOWN_KEYS)}; "
                                f"keys are <split>_{{{','.join(ARRAY_FIELDS)}}} for split in "
                                f"{SPLITS}, class_names and num_classes")
    for split in SPLITS:
        for name in REQUIRED_FIELDS:
            if f"{split}_{name}" not in raw:
                raise FeaturesError(
                    f"{path}: key '{split}_{name}' is missing; every split of {SPLITS} needs "
                    f"<split>_features and <split>_labels (val selects, test is scored)"
                )


def _num_classes(path: Path, raw: Mapping[str, Any]) -> int:
    largest = max(int(np.max(_labels_of(path, raw, split), initial=-1)) for split in SPLITS)
    if "num_classes" not in raw:
        return largest + 1
    given = np.asarray(raw["num_classes"])
    if given.shape != () or given.dtype.kind not in "iu" or int(given) < 1:
        raise FeaturesError(f"{path}:num_classes: expected a positive integer scalar, got "
                            f"{given.dtype} {given.shape}; save it as an int")
    return int(given)


def _labels_of(path: Path, raw: Mapping[str, Any], split: str) -> np.ndarray:
    key = f"{split}_labels"
    labels = np.asarray(raw[key])
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise FeaturesError(f"{path}:{key}: expected integer labels [N], got {labels.dtype} "
                            f"{labels.shape}; save class indices 0..C-1, one per row")
    if labels.size and labels.min() < 0:
        raise FeaturesError(f"{path}:{key}: negative label {int(labels.min())}; labels are "
                            "class indices 0..C-1")
    return labels.astype(np.int64)


def _split(path: Path, raw: Mapping[str, Any], split: str, num_classes: int) -> ImportedSplit:
    labels = _labels_of(path, raw, split)
    rows = len(labels)
    if labels.size and labels.max() >= num_classes:
        raise FeaturesError(f"{path}:{split}_labels: label {int(labels.max())} is not below "
                            f"num_classes {num_classes}; fix the labels or num_classes")
    if rows == 0:
        raise FeaturesError(f"{path}:{split}_labels: the split is empty; give it rows")
    features = _matrix(path, raw, f"{split}_features", rows, width=None)
    logits = (_matrix(path, raw, f"{split}_logits", rows, width=num_classes)
              if f"{split}_logits" in raw else None)
    return ImportedSplit(features, labels, _index(path, raw, split, rows), logits)


def _matrix(path: Path, raw: Mapping[str, Any], key: str, rows: int,
            width: int | None) -> np.ndarray:
    """A float32 [rows, width] matrix of finite values (width None: any width >= 1)."""
    values = np.asarray(raw[key])
    shape = f"[{rows}, {'D' if width is None else width}]"
    if values.ndim != 2 or values.dtype.kind not in "fiu" or values.shape[1] < 1:
        raise FeaturesError(f"{path}:{key}: expected numbers {shape}, got {values.dtype} "
                            f"{values.shape}; flatten or pool each row to one vector")
    if len(values) != rows:
        raise FeaturesError(f"{path}:{key}: {len(values)} rows but {key.rsplit('_', 1)[0]}"
                            f"_labels has {rows}; give one label per row")
    if width is not None and values.shape[1] != width:
        raise FeaturesError(f"{path}:{key}: {values.shape[1]} columns for {width} classes; "
                            "drop the logits or fix num_classes")
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        bad = int(np.argwhere(~np.isfinite(values))[0, 0])
        raise FeaturesError(f"{path}:{key}: row {bad} holds NaN or infinity (or a value too "
                            "large for float32); drop or recompute those rows")
    return values


def _index(path: Path, raw: Mapping[str, Any], split: str, rows: int) -> np.ndarray:
    key = f"{split}_index"
    if key not in raw:
        return np.arange(rows, dtype=np.int64)
    index = np.asarray(raw[key])
    if index.shape != (rows,) or index.dtype.kind not in "iu":
        raise FeaturesError(f"{path}:{key}: expected integers [{rows}], got {index.dtype} "
                            f"{index.shape}; give each row's position, or drop the key")
    return index.astype(np.int64)


def _class_names(path: Path, raw: Mapping[str, Any], num_classes: int) -> tuple[str, ...] | None:
    if "class_names" not in raw:
        return None
    names = np.asarray(raw["class_names"])
    if names.shape != (num_classes,) or names.dtype.kind != "U":
        raise FeaturesError(f"{path}:class_names: expected {num_classes} strings, got "
                            f"{names.dtype} {names.shape}; give one name per class")
    return tuple(str(name) for name in names)


def _source_sha256(path: Path) -> str:
    """sha256 of a file; of a folder, of each .npy file's name and sha256 in name order."""
    if not path.is_dir():
        return _file_sha256(path)
    digest = hashlib.sha256()
    for file in sorted(path.glob("*.npy")):
        digest.update(f"{file.name}\0{_file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
