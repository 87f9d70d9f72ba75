"""`tailbank import-bank`: features from elsewhere become a bank that stage 2 runs on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from features.bank import Bank
from features.errors import FeaturesError
from stages import classify, dlsa
from stages.cli import app
from stages.errors import StageError
from stages.params import Params, parse_params
from tests.features.synthetic import blobs, write_bank
from tests.stages.conftest import tiny_params

COUNTS = np.array([120, 60, 30, 12, 6])
VAL, TEST = 12, 20



def stage2_params() -> Params:
    """Tiny stage-2 params; `methods:` names only ce, not the imported key."""
    raw = tiny_params()
    raw["methods"] = {"ce": raw["methods"]["ce"]}
    raw["classify"].update(epochs=3, device="cpu")
    raw["dlsa"] = {
        "base_kinds": ["balanced_softmax", "head"],
        "num_filters": 2,
        "device": "cpu",
        "flow": {"epochs": 4, "batch_size": 128, "num_clusters": 4, "selection": "likelihood"},
        "classifier": {"epochs": 5},
    }
    raw["analyze"] = {"k": 3, "kmeans_niter": 5, "tsne_samples": 30, "use_gpu": False}
    return parse_params(raw, origin="params.yaml")


def feature_arrays(logits: bool = True) -> dict[str, np.ndarray]:
    """The contract's keys: long-tailed train, balanced val and test, 6-d class blobs."""
    arrays: dict[str, np.ndarray] = {}
    rng = np.random.default_rng(3)
    per_split = {"train": COUNTS, "val": np.full(5, VAL), "test": np.full(5, TEST)}
    for seed, (split, per_class) in enumerate(per_split.items()):
        features, labels = blobs(per_class, dim=6, seed=seed, spread=1.5)
        arrays[f"{split}_features"] = features.astype(np.float64)  # any float is converted
        arrays[f"{split}_labels"] = labels.astype(np.int32)
        if logits:
            arrays[f"{split}_logits"] = rng.normal(size=(len(labels), 5)).astype(np.float32)
    return arrays


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(stage2_params().model_dump(
        mode="json")))
    return tmp_path


def import_bank(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["import-bank", *args])
    return result.exit_code, result.stderr.strip()


def test_an_imported_npz_runs_classify_dlsa_and_analyze(project: Path) -> None:
    source = project / "features.npz"
    np.savez(source, **feature_arrays(), class_names=np.array(list("abcde")))
    code, message = import_bank(str(source), "--method", "mine")
    assert code == 0, message

    with Bank.open(Path("banks/mine/seed0.h5")) as bank:
        meta = bank.meta
        assert bank.has("test", "logits")
        assert np.array_equal(bank.labels("val"), np.repeat(np.arange(5), VAL))
    assert (meta.source_kind, meta.source) == ("imported", str(source))
    assert meta.checkpoint_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert meta.class_counts.tolist() == COUNTS.tolist()
    assert meta.class_names == tuple("abcde") and meta.feature_dim == 6

    params = stage2_params()
    metrics = json.loads((classify.run(params, "mine", 0) / "metrics.json").read_text())
    assert set(metrics) == set(params.classify.kinds)
    assert metrics["linear"]["overall"] > 0.5  # separable blobs
    dlsa_metrics = json.loads((dlsa.run(params, "mine", 0) / "metrics.json").read_text())
    assert "balanced_softmax" in json.dumps(dlsa_metrics)
    # through the CLI: --method names no method of params.yaml, the bank says it is imported
    result = CliRunner().invoke(app, ["analyze", "--method", "mine", "--seed", "0"])
    assert result.exit_code == 0, result.stderr
    analysis = json.loads(Path("results/analyze/mine/seed0/metrics.json").read_text())
    assert analysis["knn_purity"] > 0.5


def test_a_pt_dict_and_a_folder_of_npy_give_the_same_rows(project: Path) -> None:
    arrays = feature_arrays(logits=False)
    torch.save({key: torch.from_numpy(value) for key, value in arrays.items()},
               project / "features.pt")
    folder = project / "features"
    folder.mkdir()
    for key, value in arrays.items():
        np.save(folder / f"{key}.npy", value)
    assert import_bank(str(project / "features.pt"), "--method", "a")[0] == 0
    assert import_bank(str(folder), "--method", "b", "--dataset", "mine_lt")[0] == 0
    with Bank.open(Path("banks/a/seed0.h5")) as a, Bank.open(Path("banks/b/seed0.h5")) as b:
        for split in ("train", "val", "test"):
            assert np.array_equal(a.features(split), b.features(split))
            assert np.array_equal(a.labels(split), b.labels(split))
            assert not a.has(split, "logits")
        assert b.meta.dataset == "mine_lt" and b.meta.source_kind == "imported"


def test_importing_twice_gives_the_same_bytes(project: Path) -> None:
    np.savez(project / "f.npz", **feature_arrays())
    import_bank(str(project / "f.npz"), "--method", "mine")
    first = Path("banks/mine/seed0.h5").read_bytes()
    import_bank(str(project / "f.npz"), "--method", "mine")
    assert Path("banks/mine/seed0.h5").read_bytes() == first


def test_a_dumped_bank_has_no_source_attributes(tmp_path: Path) -> None:
    # banks of trained methods keep their attributes (and bytes): the new ones are optional
    write_bank(tmp_path / "bank.h5")
    with h5py.File(tmp_path / "bank.h5") as file:
        assert "source_kind" not in file.attrs and "source" not in file.attrs
    with Bank.open(tmp_path / "bank.h5") as bank:
        assert bank.meta.source_kind is None and bank.meta.source is None


def test_stage2_refuses_a_dumped_bank_under_a_key_params_does_not_name(project: Path) -> None:
    write_bank(project / "banks/other/seed0.h5", method="other")
    with pytest.raises(StageError, match="no method 'other'"):
        classify.run(stage2_params(), "other", 0)


def test_stage2_names_the_methods_when_no_bank_exists(project: Path) -> None:
    result = CliRunner().invoke(app, ["classify", "--method", "nothing"])
    assert result.exit_code == 2 and "no method 'nothing'" in result.stderr


def write_params_with(project: Path, imports: dict, seeds: list[int] | None = None) -> None:
    raw = stage2_params().model_dump(mode="json") | {"imports": imports}
    if seeds is not None:
        raw["seeds"] = seeds
    (project / "params.yaml").write_text(yaml.safe_dump(raw))


def test_an_imports_entry_files_one_bank_per_seed(project: Path) -> None:
    for seed in (0, 1):
        np.savez(project / f"f_seed{seed}.npz", **feature_arrays())
    write_params_with(project, {"mine": {"kind": "imported", "source": "f_seed{seed}.npz",
                                         "dataset": "mine_lt", "backbone": "vit_b16"}},
                      seeds=[0, 1])
    code, message = import_bank("--method", "mine")
    assert code == 0, message
    with Bank.open(Path("banks/mine/seed1.h5")) as bank:
        assert (bank.meta.source, bank.meta.seed) == ("f_seed1.npz", 1)
        assert (bank.meta.dataset, bank.meta.backbone) == ("mine_lt", "vit_b16")
    assert Path("banks/mine/seed0.h5").is_file()


def test_import_bank_names_the_command_an_entry_of_another_kind_needs(project: Path) -> None:
    write_params_with(project, {"theirs": {"kind": "checkpoint", "source": "w.pt",
                                           "backbone": "resnet20"}})
    code, message = import_bank("--method", "theirs")
    assert code == 2 and "run `tailbank dump --method theirs`" in message
    code, message = import_bank("--method", "nothing")
    assert code == 2 and "no entry 'nothing' under 'imports:'" in message


def test_an_imports_key_may_not_be_a_method_key(project: Path) -> None:
    raw = stage2_params().model_dump(mode="json")
    raw["imports"] = {"ce": {"kind": "imported", "source": "f.npz"}}
    with pytest.raises(StageError, match="imports.ce: also a key of methods:"):
        parse_params(raw, origin="params.yaml")


def test_the_dvc_blocks_of_imports() -> None:
    from stages.dag_imports import import_blocks

    blocks = import_blocks({
        "mine": {"kind": "imported", "source": "features/mine_seed{seed}.npz"},
        "theirs": {"kind": "checkpoint", "source": "weights/r50.pth", "backbone": "resnet50"},
    })
    mine, theirs = blocks["import-mine"]["do"], blocks["dump-theirs"]["do"]
    assert blocks["import-mine"]["foreach"] == "${seeds}"
    assert mine["cmd"] == "tailbank import-bank --method mine --seed ${item}"
    assert mine["deps"][0] == "features/mine_seed${item}.npz"
    assert "features/bank/imported.py" in mine["deps"] and "stages/import_bank.py" in mine["deps"]
    assert mine["outs"] == ["banks/mine/seed${item}.h5"] and mine["params"] == ["imports.mine"]
    assert theirs["cmd"] == "tailbank dump --method theirs --seed ${item}"
    assert theirs["deps"][:2] == ["weights/r50.pth", "data/splits/${data.dataset}.json"]
    assert theirs["params"][-2:] == ["dump.batch_size", "imports.theirs"]
    assert "data.dataset" in theirs["params"] and "data.root" not in theirs["params"]


def test_imports_get_stage2_blocks_and_a_row_in_the_report() -> None:
    from stages import dag

    params = stage2_params().model_dump(mode="json")
    params["imports"] = {"mine": {"kind": "imported", "source": "f.npz"}}
    rendered = dag.view(params["methods"], params["imports"], params["data"]["dataset"])
    stages = rendered["stages"]
    for stage in ("import", "classify", "dlsa", "analyze"):
        assert f"{stage}-mine" in stages
    assert {"results/summary/ce.json": {"cache": False}} in stages["report"]["metrics"]
    assert {"results/summary/mine.json": {"cache": False}} in stages["report"]["metrics"]
    assert "imports" in stages["report"]["params"]
    # no training curves for a bank trained elsewhere; its per-class accuracy and t-SNE are shown
    plots = {name: spec for entry in rendered["plots"] for name, spec in entry.items()}
    assert list(plots["val_accuracy"]["y"]) == ["reports/plots/ce/curves.csv"]
    assert "reports/plots/mine/per_class.csv" in plots["per_class_accuracy"]["y"]
    assert "tsne_mine" in plots
    order = [(stage.name, name) for stage, name in dag.run_order(params["methods"],
                                                                  params["imports"])]
    assert order.index(("import", "mine")) < order.index(("classify", "mine"))
    assert order[-1] == ("report", None)


def test_a_project_of_imports_only_runs_through_tailbank_run(project: Path) -> None:
    """No method to train: `tailbank run` imports the bank, runs stage 2 and the report on it."""
    np.savez(project / "f.npz", **feature_arrays())
    raw = stage2_params().model_dump(mode="json")
    raw.update(methods={}, imports={"mine": {"kind": "imported", "source": "f.npz",
                                             "dataset": "mine_lt", "backbone": "vit_b16"}})
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(Path("results/summary/mine.json").read_text())
    assert summary["acc"] > 50  # separable blobs, in percent
    assert "mine" in Path("reports/index.html").read_text()
    for folder in ("classify", "dlsa", "analyze"):
        assert (project / "results" / folder / "mine/seed0/metrics.json").is_file()


def test_params_need_a_method_or_an_import() -> None:
    raw = stage2_params().model_dump(mode="json") | {"methods": {}}
    with pytest.raises(StageError, match="define at least one method"):
        parse_params(raw, origin="params.yaml")


def test_a_bank_with_half_its_provenance_is_refused(project: Path) -> None:
    np.savez(project / "f.npz", **feature_arrays())
    import_bank(str(project / "f.npz"), "--method", "mine")
    with h5py.File("banks/mine/seed0.h5", "r+") as file:
        del file.attrs["source"]
    with pytest.raises(FeaturesError, match="source_kind and source go together"):
        Bank.open(Path("banks/mine/seed0.h5"))
