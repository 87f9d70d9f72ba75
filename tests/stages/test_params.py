"""params.yaml validation: every bad key, type or range is one line naming the key."""

from __future__ import annotations

import pytest

from stages.errors import StageError
from stages.params import load_params, parse_params, section_digest
from tests.stages.conftest import tiny_params


def test_repository_params_are_valid():
    from tests.stages.conftest import REPO

    params = load_params(REPO / "params.yaml")
    assert set(params.methods) >= {"ce", "cbs", "bsce"}
    assert params.data.dataset == "digits_lt"


def edit(params, dotted, value):
    *parents, last = dotted.split(".")
    node = params
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return params


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("data.imbalanse_factor", 10, "unknown key 'data.imbalanse_factor' (did you mean 'data.imbalance_factor'?)"),
        ("data.imbalance_factor", 0.5, "data.imbalance_factor: Input should be greater than or equal to 1"),
        ("data.imbalance_factor", "lots", "data.imbalance_factor: Input should be a valid number"),
        ("data.dataset", "cifar100lt", "did you mean 'cifar100_lt'"),
        ("train.epochs", -3, "train.epochs: Input should be greater than or equal to 1"),
        ("train.optim.lrate", 0.1, "unknown key 'train.optim.lrate'; valid keys here: lr, momentum"),
        ("train.backbone", "resnet33", "train.backbone: unknown name 'resnet33'"),
        ("train.device", "tpu", "train.device: 'tpu' is not a device"),
        ("methods.ce.kind", "cee", "methods.ce.kind: unknown name 'cee' (did you mean 'ce'?)"),
        ("methods.ce.optoins", {}, "unknown key 'methods.ce.optoins' (did you mean 'methods.ce.options'?)"),
        ("methods.ce.options", {"tau": 1}, "unknown key 'methods.ce.options.tau'"),
        ("methods.cbs.train", {"epochz": 3}, "unknown key 'methods.cbs.train.epochz' (did you mean 'methods.cbs.train.epochs'?)"),
        ("classify.kinds", ["linear", "lsw"], "did you mean 'lws'"),
        ("eval.few_below", 0, "eval.few_below: Input should be greater than or equal to 1"),
        ("sede", 1, "unknown key 'sede' (did you mean 'seeds'?)"),
    ],
)
def test_bad_params_name_the_key(write_params, dotted, value, expected):
    path = write_params(edit(tiny_params(), dotted, value))
    with pytest.raises(StageError) as caught:
        load_params(path)
    message = str(caught.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(StageError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(StageError, match="not valid YAML"):
        load_params(bad)


def test_method_overrides_merge_into_train(write_params):
    params = tiny_params()
    params["methods"]["cbs"]["train"] = {"epochs": 7, "optim": {"lr": 0.01}}
    loaded = load_params(write_params(params))
    recipe = loaded.train_for("cbs")
    assert recipe.epochs == 7 and recipe.optim.lr == 0.01
    assert recipe.optim.momentum == loaded.train.optim.momentum
    assert loaded.train_for("ce").epochs == loaded.train.epochs


def test_unknown_method_lists_defined_ones(write_params):
    loaded = load_params(write_params())
    with pytest.raises(StageError, match=r"no method 'bcse'.*did you mean 'bsce'"):
        loaded.method("bcse")


def _pretrain_digest(params: dict, method: str = "ce") -> str:
    loaded = parse_params(params, "params.yaml")
    return section_digest(0, loaded.data, loaded.train_for(method), loaded.method(method))


def test_optimiser_keys_added_with_adamw_change_no_digest_at_their_defaults():
    """kind, betas and eps are dumped (and digested) only when set to other than the default:
    the models and banks of every params file written before AdamW keep their digests."""
    plain = _pretrain_digest(tiny_params())
    spelled_out = tiny_params()
    spelled_out["train"]["optim"].update(kind="sgd", betas=[0.9, 0.999], eps=1e-8)
    assert _pretrain_digest(spelled_out) == plain
    adamw = tiny_params()
    adamw["train"]["optim"].update(kind="adamw", lr=1e-3)
    adamw_digest = _pretrain_digest(adamw)
    assert adamw_digest != plain
    adamw["train"]["optim"].update(betas=[0.9, 0.95])
    assert _pretrain_digest(adamw) != adamw_digest


def test_machine_keys_change_no_digest():
    """Models and banks record what made them, not where: the root of a built-in data set,
    the loader's workers and the devices leave the digests alone; a recipe key does not."""
    plain = _pretrain_digest(tiny_params())
    moved = tiny_params()
    moved["data"].update(root="/data/elsewhere", download=True)
    moved["train"].update(num_workers=3, device="cpu")
    assert _pretrain_digest(moved) == plain
    loaded = parse_params(moved, "params.yaml")
    assert section_digest(loaded.data, loaded.dump) == section_digest(
        parse_params(tiny_params(), "params.yaml").data, loaded.dump.model_copy(
            update={"device": "cuda"}))
    other = tiny_params()
    other["train"]["epochs"] += 1
    assert _pretrain_digest(other) != plain


def test_the_root_of_your_own_images_is_part_of_the_digest():
    from stages.data_section import DataParams

    here, there = (DataParams(dataset="image_folder", root=root) for root in ("photos", "old"))
    assert section_digest(here) != section_digest(there)


def test_one_method_may_train_with_adamw():
    params = tiny_params()
    params["methods"]["ce"]["train"] = {"optim": {"kind": "adamw", "lr": 1e-3, "eps": 1e-6}}
    loaded = parse_params(params, "params.yaml")
    optim = loaded.train_for("ce").optim
    assert (optim.kind, optim.lr, optim.eps, optim.betas) == ("adamw", 1e-3, 1e-6, (0.9, 0.999))
    assert loaded.train_for("bsce").optim.kind == "sgd"
    assert "kind" not in loaded.train_for("bsce").model_dump()["optim"]


@pytest.mark.parametrize(
    ("optim", "expected"),
    [
        ({"kind": "adam"}, "train.optim.kind: unknown name 'adam' (did you mean 'adamw'?)"),
        ({"betas": [0.9, 0.99]}, "train.optim.betas: is AdamW's; set kind: adamw"),
        ({"kind": "adamw", "nesterov": True}, "train.optim.nesterov: is SGD's"),
        ({"kind": "adamw", "betas": [0.9, 1.0]}, "train.optim.betas: items must be < 1"),
    ],
)
def test_optimiser_errors_name_the_key(optim, expected):
    params = tiny_params()
    params["train"]["optim"].update(optim)
    with pytest.raises(StageError) as caught:
        parse_params(params, "params.yaml")
    assert expected in str(caught.value)
