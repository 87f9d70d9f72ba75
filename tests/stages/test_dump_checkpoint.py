"""`tailbank dump --checkpoint`: a bank from a network trained elsewhere, without pretrain."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from typer.testing import CliRunner

from features.bank import Bank
from pipeline.models.registry import build_backbone
from pipeline.models.torchvision_resnet import grey_stem
from stages import prepare
from stages.cli import app
from stages.params import parse_params
from tests.stages.conftest import tiny_params


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """digits_lt prepared (sklearn's bundled digits: no download), tiny params."""
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    raw["dump"] = {"batch_size": 256, "device": "cpu"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    prepare.run(parse_params(raw, origin="params.yaml"))
    return tmp_path


def dump(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["dump", "--method", "theirs", *args])
    return result.exit_code, result.stderr.strip()


def test_dump_from_a_tailbank_backbone_state_dict(project: Path) -> None:
    network = build_backbone("resnet20", num_classes=10, in_channels=1, seed=5).eval()
    # as a user saves it after training with DDP
    torch.save({"state_dict": {f"module.{key}": value for key, value in
                               network.state_dict().items()}}, project / "theirs.pt")
    code, message = dump("--checkpoint", "theirs.pt", "--backbone", "resnet20")
    assert code == 0, message
    with Bank.open(Path("banks/theirs/seed0.h5")) as bank:
        meta = bank.meta
        assert bank.has("test", "logits")  # the head has one row per digit
        features, logits = bank.features("test"), bank.logits("test")
    assert (meta.source_kind, meta.source, meta.backbone) == ("checkpoint", "theirs.pt",
                                                              "resnet20")
    assert meta.checkpoint_sha256 == hashlib.sha256(
        (project / "theirs.pt").read_bytes()).hexdigest()
    assert features.shape[1] == network.feature_dim == meta.feature_dim
    # the logits are the file's own head applied to the bank's features
    with torch.no_grad():
        expected = network.fc(torch.from_numpy(features)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_dump_from_a_torchvision_resnet_with_another_head_has_no_logits(project: Path) -> None:
    network = torchvision.models.resnet18(weights=None, num_classes=1000)
    network.conv1 = grey_stem(1)  # digits are grey; a colour file is refused (below)
    torch.save(network.state_dict(), project / "resnet18.pth")
    code, message = dump("--checkpoint", "resnet18.pth", "--backbone", "resnet18")
    assert code == 0, message
    with Bank.open(Path("banks/theirs/seed0.h5")) as bank:
        assert not bank.has("train", "logits") and bank.meta.feature_dim == 512


def test_a_colour_torchvision_file_on_grey_digits_is_refused(project: Path) -> None:
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), project / "rgb.pth")
    code, message = dump("--checkpoint", "rgb.pth", "--backbone", "resnet18")
    assert code == 2 and "rgb.pth: its weights do not fit backbone 'resnet18'" in message
    assert "\n" not in message


def test_weights_of_another_backbone_are_refused(project: Path) -> None:
    network = build_backbone("resnet20", num_classes=10, in_channels=1, seed=0)
    torch.save(network.state_dict(), project / "r20.pt")
    code, message = dump("--checkpoint", "r20.pt", "--backbone", "resnet32")
    assert code == 2 and "r20.pt: not the weights of backbone 'resnet32'" in message


def test_a_checkpoint_with_a_pickled_callable_is_refused(project: Path) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {project / 'pwned'}",)

    torch.save({"conv1.weight": Payload()}, project / "bad.pt")
    code, message = dump("--checkpoint", "bad.pt", "--backbone", "resnet20")
    assert code == 2 and "bad.pt: not loadable with torch.load(weights_only=True)" in message
    assert not (project / "pwned").exists()


def test_checkpoint_and_backbone_go_together(project: Path) -> None:
    code, message = dump("--checkpoint", "x.pt")
    assert code == 2 and "--checkpoint and --backbone go together" in message
    code, message = dump("--checkpoint", "x.pt", "--backbone", "resnet3")
    assert code == 2 and "--backbone" in message and "resnet32" in message


def test_an_imports_entry_of_kind_checkpoint_is_dumped(project: Path) -> None:
    network = build_backbone("resnet20", num_classes=10, in_channels=1, seed=2)
    torch.save(network.state_dict(), project / "theirs.pt")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["imports"] = {"theirs": {"kind": "checkpoint", "source": "theirs.pt",
                                 "backbone": "resnet20"}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    code, message = dump()
    assert code == 0, message
    with Bank.open(Path("banks/theirs/seed0.h5")) as bank:
        assert (bank.meta.source_kind, bank.meta.source) == ("checkpoint", "theirs.pt")


@pytest.mark.slow
def test_the_import_blocks_list_what_their_stages_import_and_read(project: Path) -> None:
    from stages.dag_imports import import_blocks
    from tests.stages import test_dag_code as check
    from tests.stages.test_import_bank import feature_arrays

    torch.save(build_backbone("resnet20", num_classes=10, in_channels=1).state_dict(),
               project / "theirs.pt")
    np.savez(project / "mine.npz", **feature_arrays())
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["imports"] = {
        "theirs": {"kind": "checkpoint", "source": "theirs.pt", "backbone": "resnet20"},
        "mine": {"kind": "imported", "source": "mine.npz", "dataset": "mine_lt"},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    blocks = yaml.safe_load(yaml.safe_dump(import_blocks(raw["imports"])))
    for stage, name, key in (("dump:run_import", "dump-theirs", "theirs"),
                             ("import_bank", "import-mine", "mine")):
        trace, block = check._trace(project, stage, key, "0"), blocks[name]["do"]
        assert not check.undeclared_modules(trace["modules"], block["deps"]), name
        read, declared = trace["params"], block["params"]
        assert not check.undeclared_reads(read, declared, trace["leaves"]), (name, read)
        assert not check.unread_declarations(read, declared), (name, read)
        assert not check.unread_leaves(read, declared, trace["leaves"]), (name, read)


def test_a_checkpoint_is_not_filed_under_a_key_of_params(project: Path) -> None:
    code, message = dump_as("ce", "--checkpoint", "x.pt", "--backbone", "resnet20")
    assert code == 2 and "--method ce: a key of params.yaml" in message


def dump_as(method: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["dump", "--method", method, *args])
    return result.exit_code, result.stderr.strip()
