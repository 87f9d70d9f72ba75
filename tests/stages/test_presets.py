"""Presets merge a paper's recipe into params.yaml, validated, keeping the user's comments."""

from __future__ import annotations

import shutil

import pytest
import yaml

from stages import presets
from stages.errors import StageError
from stages.params import load_params
from tests.stages.conftest import REPO


@pytest.fixture
def params_copy(tmp_path):
    target = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", target)
    return target


@pytest.mark.parametrize("name", sorted(presets.available()))
def test_every_preset_applies_and_validates(params_copy, name):
    changed = presets.apply(name, params_copy)
    loaded = load_params(params_copy)
    preset = presets.read_preset(name)
    assert changed
    if "data" in preset and "dataset" in preset["data"]:
        assert loaded.data.dataset == preset["data"]["dataset"]
    if "methods" in preset:
        assert set(loaded.methods) == set(preset["methods"])
    # the keys the preset leaves alone keep their values and comments
    assert loaded.seeds == load_params(REPO / "params.yaml").seeds
    assert "# shot groups for every evaluation" in params_copy.read_text()


def test_baselines_preset_sets_the_paper_schedule(params_copy):
    presets.apply("cifar100_lt_baselines", params_copy)
    train = load_params(params_copy).train
    assert (train.epochs, train.batch_size, train.optim.lr) == (200, 128, 0.1)
    assert train.schedule.milestones == (160, 180) and train.schedule.gamma == 0.01


def test_unknown_preset_names_the_closest(params_copy):
    before = params_copy.read_bytes()
    with pytest.raises(StageError, match="did you mean 'cifar100_lt_baselines'"):
        presets.apply("cifar100_lt_baseline", params_copy)
    assert params_copy.read_bytes() == before


def test_invalid_merge_leaves_params_untouched(params_copy, monkeypatch, tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "broken.yaml").write_text(yaml.safe_dump({"train": {"epochs": -1}}))
    monkeypatch.setattr(presets, "PRESET_DIR", folder)
    before = params_copy.read_bytes()
    with pytest.raises(StageError, match=r"params.yaml: train.epochs"):
        presets.apply("broken", params_copy)
    assert params_copy.read_bytes() == before
    assert sorted(p.name for p in params_copy.parent.iterdir()) == ["params.yaml", "presets"]


def test_baselines_preset_trains_the_loss_baselines_with_the_papers_settings(params_copy):
    from pipeline.methods.kinds import build_options

    presets.apply("cifar100_lt_baselines", params_copy)
    params = load_params(params_copy)
    kinds = {name: entry.kind for name, entry in params.methods.items()}
    assert {"la", "ldam_drw", "focal", "cb"} <= set(kinds.values())
    ldam = build_options("ldam_drw", params.methods["ldam_drw"].options)
    # deferred re-weighting from epoch 160 of 200, as in Cao et al.
    assert ldam.drw_start * params.train_for("ldam_drw").epochs == 160
    assert build_options("cb", params.methods["cb_focal"].options).loss == "focal"
