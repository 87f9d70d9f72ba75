"""Crafted and malformed feature sources: each refused in one line naming file, key and fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from stages.cli import app
from tests.stages.test_import_bank import feature_arrays

Arrays = dict[str, np.ndarray]


class Payload:
    """Pickles to a call of `os.system`: what a crafted file runs when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def refused(source: Path, *fragments: str) -> None:
    result = CliRunner().invoke(app, ["import-bank", str(source), "--method", "mine"])
    message = result.stderr.strip()
    assert result.exit_code == 2, message
    assert message.count("\n") == 0, message
    for fragment in (str(source), *fragments):
        assert fragment in message, message
    assert not Path("banks/mine/seed0.h5").exists()


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_an_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    folder = tmp_path / "features"
    folder.mkdir()
    for key, value in feature_arrays().items():
        np.save(folder / f"{key}.npy", value)
    marker = tmp_path / "pwned"
    np.save(folder / "train_features.npy", np.array([Payload(marker)], dtype=object),
            allow_pickle=True)
    refused(folder, "train_features.npy", "object array")
    assert not marker.exists()


def test_an_object_array_in_an_npz_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    arrays = feature_arrays() | {"train_labels": np.array([Payload(marker)], dtype=object)}
    np.savez(tmp_path / "f.npz", **arrays)
    refused(tmp_path / "f.npz", "train_labels", "object array")
    assert not marker.exists()


def test_a_pt_with_a_pickled_callable_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = {key: torch.from_numpy(value) for key, value in feature_arrays().items()}
    torch.save({**payload, "train_features": Payload(marker)}, tmp_path / "f.pt")
    refused(tmp_path / "f.pt", "weights_only=True", "dict of tensors")
    assert not marker.exists()


def test_a_pt_that_is_not_a_dict_is_refused(tmp_path: Path) -> None:
    torch.save(torch.zeros(3), tmp_path / "f.pt")
    refused(tmp_path / "f.pt", "not a dict of tensors")


def _edit(key: str, value: Callable[[Arrays], np.ndarray | None]) -> Callable[[Arrays], Arrays]:
    def edit(arrays: Arrays) -> Arrays:
        new = value(arrays)
        return {k: v for k, v in arrays.items() if k != key} | ({} if new is None else {key: new})

    return edit


def _nan_row(arrays: Arrays) -> np.ndarray:
    features = arrays["val_features"].copy()
    features[3, 1] = np.nan
    return features


BAD = {
    "mismatched lengths": (_edit("test_features", lambda a: a["test_features"][:-1]),
                           ("test_features", "rows but test_labels has")),
    "NaN features": (_edit("val_features", _nan_row), ("val_features", "row 3", "NaN")),
    "labels out of range": (_edit("num_classes", lambda a: np.array(4)),
                            ("_labels", "not below num_classes 4", "fix the labels")),
    "negative label": (_edit("val_labels", lambda a: a["val_labels"] - 1),
                       ("val_labels", "negative label")),
    "float labels": (_edit("train_labels", lambda a: a["train_labels"].astype(np.float32)),
                     ("train_labels", "integer labels")),
    "missing split": (_edit("val_features", lambda a: None),
                      ("'val_features' is missing", "val selects")),
    "3-d features": (_edit("train_features", lambda a: a["train_features"][:, :, None]),
                     ("train_features", "flatten or pool")),
    "features of two widths": (_edit("test_features", lambda a: a["test_features"][:, :4]),
                               ("differ in width",)),
    "logits of the wrong width": (_edit("val_logits", lambda a: a["val_logits"][:, :3]),
                                  ("val_logits", "3 columns for 5 classes")),
    "logits of one split only": (_edit("test_logits", lambda a: None),
                                 ("'test_logits' is missing", "every split or for none")),
    "a misspelled key": (_edit("train_feature", lambda a: a["train_features"]),
                         ("train_feature", "did you mean 'train_features'")),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_malformed_sources_are_refused_in_one_line(tmp_path: Path, case: str) -> None:
    edit, fragments = BAD[case]
    np.savez(tmp_path / "f.npz", **edit(feature_arrays()))
    refused(tmp_path / "f.npz", *fragments)


def test_unknown_suffix_and_missing_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f.csv").write_text("1,2\n")
    refused(tmp_path / "f.csv", "unknown suffix")
    refused(tmp_path / "none.npz", "not found")


def test_a_truncated_npz_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "f.npz", **feature_arrays())
    data = (tmp_path / "f.npz").read_bytes()
    (tmp_path / "f.npz").write_bytes(data[: len(data) // 2])
    refused(tmp_path / "f.npz", "f.npz")


def test_a_bad_method_key_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "f.npz", **feature_arrays())
    result = CliRunner().invoke(app, ["import-bank", str(tmp_path / "f.npz"), "--method", "a/b"])
    assert result.exit_code == 2 and "--method 'a/b'" in result.stderr
