"""Splits to and from JSON, with every malformed file rejected by name."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.longtail import make_splits
from pipeline.data.splits import Splits
from pipeline.errors import PipelineError

ORIGIN = "data/splits/digits_lt.json"


@pytest.fixture
def splits(digits_source: DatasetSource) -> Splits:
    return make_splits(
        digits_source,
        imbalance_factor=20,
        val_per_class=10,
        test_per_class=40,
        max_per_class=None,
        seed=0,
    )


def test_round_trip_through_json_is_exact(splits: Splits) -> None:
    text = json.dumps(splits.to_dict())
    restored = Splits.from_dict(json.loads(text), ORIGIN)
    assert json.dumps(restored.to_dict()) == text
    np.testing.assert_array_equal(restored.train.indices, splits.train.indices)
    assert restored.train.indices.dtype == np.int64 and restored.class_counts.dtype == np.int64


def test_key_order_is_fixed(splits: Splits) -> None:
    assert list(splits.to_dict()) == [
        "dataset",
        "num_classes",
        "class_counts",
        "train",
        "val",
        "test",
    ]


def _broken(splits: Splits, change: str) -> dict[str, Any]:
    data = json.loads(json.dumps(splits.to_dict()))
    if change == "missing_key":
        del data["val"]
    elif change == "wrong_type":
        data["num_classes"] = "ten"
    elif change == "counts_length":
        data["class_counts"] = data["class_counts"][:-1]
    elif change == "unsorted":
        data["test"]["indices"] = data["test"]["indices"][::-1]
    elif change == "overlap":
        data["val"]["indices"] = sorted(set(data["val"]["indices"]) | {data["test"]["indices"][0]})
    elif change == "counts_sum":
        data["class_counts"][0] += 1
    elif change == "float_index":
        data["train"]["indices"][0] = 0.5
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing_key", "no 'val' entry"),
        ("wrong_type", "'num_classes' should be of type int"),
        ("counts_length", "'class_counts' must hold 10"),
        ("unsorted", "'test.indices' must be non-negative and strictly increasing"),
        ("overlap", "'val' and 'test' share 1 images"),
        ("counts_sum", "'class_counts' sums to"),
        ("float_index", "'train.indices' must hold integers"),
    ],
)
def test_malformed_files_name_the_origin_and_the_fault(
    splits: Splits, change: str, message: str
) -> None:
    with pytest.raises(PipelineError, match=ORIGIN) as caught:
        Splits.from_dict(_broken(splits, change), ORIGIN)
    assert message in str(caught.value)


def test_not_an_object_is_rejected() -> None:
    with pytest.raises(PipelineError, match="is not a JSON object"):
        Splits.from_dict([1, 2], ORIGIN)


def test_check_against_accepts_its_own_source(splits: Splits, digits_source: DatasetSource) -> None:
    splits.check_against(digits_source, ORIGIN)


def test_check_against_rejects_other_data(splits: Splits, digits_source: DatasetSource) -> None:
    relabelled = {**splits.to_dict(), "dataset": "mnist_lt"}
    with pytest.raises(PipelineError, match="not digits_lt"):
        Splits.from_dict(relabelled, ORIGIN).check_against(digits_source, ORIGIN)
    shifted = splits.to_dict()
    shifted["test"]["indices"] = [*shifted["test"]["indices"][:-1], 5000]
    with pytest.raises(PipelineError, match="points past the 1797 images"):
        Splits.from_dict(shifted, ORIGIN).check_against(digits_source, ORIGIN)


def test_unknown_split_name_is_rejected(splits: Splits) -> None:
    with pytest.raises(PipelineError, match="unknown split 'dev'"):
        splits.part("dev")


def test_read_checks_the_file_and_its_source(
    splits: Splits, digits_source: DatasetSource, tmp_path
) -> None:
    path = tmp_path / "digits_lt.json"
    path.write_text(json.dumps(splits.to_dict()))
    assert Splits.read(path, digits_source, fix="redo it").to_dict() == splits.to_dict()
    assert Splits.read(path, None, fix="redo it").to_dict() == splits.to_dict()
    path.write_bytes(b"{not json")
    with pytest.raises(PipelineError, match=rf"^{path}: not valid JSON; redo it$"):
        Splits.read(path, digits_source, fix="redo it")
