"""End to end: the user's own image folder through `dvc repro` (one method, one epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.data.standins import write_image_folder
from tests.stages.conftest import tiny_params
from tests.stages.dvc_projects import branch, dvc, new_project, ran_stages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# A long tail of five classes; val (2 per class) is carved from train, test has its folder.
TRAIN_COUNTS = {"ant": 40, "bee": 24, "cat": 14, "dog": 8, "eel": 5}
TEST_COUNTS = dict.fromkeys(TRAIN_COUNTS, 4)


def _params() -> dict:
    params = tiny_params()
    params["methods"] = {"ce": params["methods"]["ce"]}
    params["train"].update(epochs=1, backbone="resnet20", batch_size=32)
    params["data"].update(
        dataset="image_folder",
        root="data/photos",
        image_size=16,
        folders={"train": "train", "val": None, "test": "test"},
        val_per_class=2,
    )
    params["eval"].update(many_above=20, few_below=8)
    return params


def test_an_image_folder_runs_through_the_whole_dag(tmp_path: Path) -> None:
    new_project(tmp_path, _params())  # the DAG of the one method (the repository's has eight)
    write_image_folder(tmp_path / "data/photos/train", TRAIN_COUNTS, grey=("cat",))
    write_image_folder(tmp_path / "data/photos/test", TEST_COUNTS, seed=1)

    assert ran_stages(dvc(tmp_path, "repro")) == {"prepare", "report"} | branch("ce")

    splits = json.loads((tmp_path / "data/splits/image_folder.json").read_text())
    assert splits["class_counts"] == [38, 22, 12, 6, 3]
    assert splits["test"]["pool"] == "test" and len(splits["test"]["indices"]) == 20
    assert len(splits["val"]["indices"]) == 10
    assert (tmp_path / "banks/ce/seed0.h5").is_file()
    summary = json.loads((tmp_path / "results/summary/ce.json").read_text())
    assert 0.0 <= summary["acc"] <= 100.0
