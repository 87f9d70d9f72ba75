"""tailbank's version, installed or not (stages/version.py) and `tailbank --version`."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stages import version
from stages.cli import app

REPO = Path(__file__).resolve().parents[2]


def not_installed(name: str) -> str:
    raise metadata.PackageNotFoundError(name)


def test_an_uninstalled_checkout_reads_its_pyproject(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    tomllib = pytest.importorskip("tomllib")
    monkeypatch.setattr(version.metadata, "version", not_installed)
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version.tailbank_version() == expected
    assert version.tailbank_version(tmp_path / "missing.toml") == "unknown"
    broken = tmp_path / "pyproject.toml"
    broken.write_text("[project\n")
    assert version.tailbank_version(broken) == "unknown"


def test_the_installed_version_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(version.metadata, "version", lambda name: "9.9.9")
    assert version.tailbank_version() == "9.9.9"


def test_version_option_prints_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(version.metadata, "version", lambda name: "1.2.3")
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0 and done.output == "tailbank 1.2.3\n"
