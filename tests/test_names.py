"""The torch-free name registries agree with the torch-side ones, and `check` imports no torch."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "faiss", "nflows")


def test_method_kinds_match_the_method_classes():
    from pipeline.methods import METHODS
    from pipeline.methods.kinds import METHOD_KINDS

    assert list(METHOD_KINDS) == list(METHODS)
    for name, kind in METHOD_KINDS.items():
        method = METHODS[name]
        assert (method.Options, method.needs_teacher, method.__module__) == (
            kind.options, kind.needs_teacher, kind.module)
        assert dataclasses.is_dataclass(kind.options)


def test_backbone_names_match_the_builders():
    from pipeline.models.names import BACKBONES, CIFAR_DEPTHS, TORCHVISION_BACKBONES
    from pipeline.models.torchvision_resnet import TORCHVISION_BUILDERS

    assert set(TORCHVISION_BACKBONES) == set(TORCHVISION_BUILDERS)
    assert BACKBONES == (*CIFAR_DEPTHS, *TORCHVISION_BACKBONES)


def test_dataset_and_augmentation_names_match_the_loaders():
    from pipeline.data import longtail, transforms
    from pipeline.data.list_sources import LIST_DATASETS
    from pipeline.data.names import (
        AUGMENTATIONS,
        DATASETS,
        FILE_DATASETS,
        POLICY_AUGMENTATIONS,
        PROFILED_TRAIN_POOL_DATASETS,
        USER_DATASETS,
    )
    from pipeline.data.torchvision_sources import TORCHVISION_DATASETS

    assert set(DATASETS) == {"digits_lt", *TORCHVISION_DATASETS, *LIST_DATASETS, *USER_DATASETS}
    assert set(FILE_DATASETS) == {*LIST_DATASETS, *USER_DATASETS}
    assert PROFILED_TRAIN_POOL_DATASETS == longtail.PROFILED_FROM_TRAIN_POOL == TORCHVISION_DATASETS
    assert transforms.AUGMENTATIONS is AUGMENTATIONS
    assert set(POLICY_AUGMENTATIONS) < set(AUGMENTATIONS)


def test_precision_names_match_the_autocast_types():
    from pipeline.engine import precision
    from pipeline.engine.config import PRECISIONS

    assert set(PRECISIONS) == {"fp32", *precision._DTYPES}


def _imported(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``python -X importtime -m stages.cli *args``; the top-level packages it imported."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "stages.cli", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    modules = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", done.stderr, re.M)
    return done, {module.split(".")[0] for module in modules}


@pytest.mark.parametrize("args", [["check"], ["--help"]], ids=["check", "help"])
def test_check_and_help_import_no_torch(tmp_path: Path, args: list[str]):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    done, packages = _imported(args, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stages" in packages  # the importtime output was read
    assert not packages & set(HEAVY), sorted(packages & set(HEAVY))


def test_method_options_know_no_params_file():
    for module in ("pipeline/methods/options.py", "pipeline/methods/kinds.py"):
        assert "params.yaml" not in (REPO / module).read_text()
