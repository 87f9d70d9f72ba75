"""The data keys of the user datasets and of the papers' CIFAR-LT train set: validation, and
digests that stay as they were while the keys keep their defaults."""

from __future__ import annotations

from typing import Any

import pytest

from stages.data_section import DATA_KEYS_DIGESTED_WHEN_SET, DataParams
from stages.errors import StageError
from stages.params import parse_params, section_digest
from tests.stages.conftest import tiny_params


def _with_data(**data: Any) -> dict[str, Any]:
    params = tiny_params()
    params["data"].update(data)
    return params


def test_new_keys_at_their_default_are_left_out_of_the_dump() -> None:
    dumped = DataParams().model_dump(mode="json")
    assert not set(DATA_KEYS_DIGESTED_WHEN_SET) & set(dumped)
    assert {"dataset", "lists", "val_per_class"} <= set(dumped)


def test_a_new_key_away_from_its_default_is_dumped_and_digested() -> None:
    default = parse_params(_with_data(dataset="cifar10_lt"), "p.yaml").data
    standard = parse_params(_with_data(dataset="cifar10_lt", val_from="left_out"), "p.yaml").data
    assert standard.model_dump()["val_from"] == "left_out"
    assert section_digest(standard) != section_digest(default)
    # written out at its default value, a key digests as if it were not there
    explicit = parse_params(_with_data(dataset="cifar10_lt", val_from="train"), "p.yaml").data
    assert section_digest(explicit) == section_digest(default)


def test_user_datasets_validate() -> None:
    folder = parse_params(_with_data(dataset="image_folder", root="/photos", image_size=64,
                                     folders={"test": "held_out"}), "p.yaml").data
    assert folder.image_size == 64 and folder.folders.test == "held_out"
    listed = parse_params(_with_data(dataset="image_list", lists={"train": "train.txt"}),
                          "p.yaml").data
    assert listed.lists.train == "train.txt" and listed.image_size is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"image_size": 32}, "p.yaml: data.image_size: digits_lt is held in memory at its own "
                             "size; remove the key"),
        ({"dataset": "image_folder", "image_size": 4},
         "p.yaml: data.image_size: Input should be greater than or equal to 8"),
        ({"dataset": "image_folder", "val_from": "left_out"},
         "p.yaml: data.val_from: 'left_out' applies to a profile drawn from a train pool"),
        ({"val_from": "leftout"}, "p.yaml: data.val_from: unknown name 'leftout' (did you mean "
                                  "'left_out'?)"),
        ({"dataset": "cifar10_lt", "folders": {"test": "t"}},
         "p.yaml: data.folders: class folders apply to image_folder, not to cifar10_lt"),
        ({"dataset": "image_folder", "folders": {"tset": "t"}},
         "p.yaml: unknown key 'data.folders.tset' (did you mean 'data.folders.test'?)"),
        ({"dataset": "image_folder", "lists": {"train": "a.txt"}},
         "p.yaml: data.lists: image_folder reads class folders, not lists; use data.folders"),
        ({"dataset": "image_list"}, "p.yaml: data.lists: image_list needs data.lists.train"),
    ],
)
def test_bad_data_keys_name_the_key(data: dict[str, Any], expected: str) -> None:
    with pytest.raises(StageError) as caught:
        parse_params(_with_data(**data), "p.yaml")
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_image_list_without_any_lists_key_is_caught_on_load() -> None:
    params = _with_data(dataset="image_list")
    del params["data"]["lists"]
    with pytest.raises(StageError, match="data.lists: image_list needs data.lists.train"):
        parse_params(params, "p.yaml")
