"""A stage's outputs change together (`stages.outputs`): staged, then swapped in as one set."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from stages import outputs
from stages.errors import StageError
from stages.outputs import STAGING, StageOutputs, check_space, check_writable, recover


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes); {} when it does not exist."""
    if not folder.exists():
        return {}
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def write_set(out: StageOutputs, folder: Path, version: str) -> None:
    staged = out.staged(folder)
    (staged / "metrics.json").write_text(json.dumps({"version": version}))
    (staged / "per_class").mkdir()
    (staged / "per_class" / f"{version}.csv").write_text(version)


def test_a_new_set_replaces_the_old_one_whole() -> None:
    folder = Path("results/classify/ce")
    with StageOutputs(folders=[folder]) as out:
        write_set(out, folder, "old")
    with StageOutputs(folders=[folder]) as out:
        write_set(out, folder, "new")
    assert tree(folder) == {"metrics.json": b'{"version": "new"}', "per_class/new.csv": b"new"}
    assert list(STAGING.iterdir()) == [STAGING / ".lock"]


def test_an_error_before_the_swap_leaves_the_old_set_and_no_staging() -> None:
    folder = Path("results/classify/ce")
    with StageOutputs(folders=[folder]) as out:
        write_set(out, folder, "old")
    before = tree(folder)
    with pytest.raises(RuntimeError, match="training failed"), StageOutputs(
        folders=[folder]
    ) as out:
        write_set(out, folder, "new")
        raise RuntimeError("training failed")
    assert tree(folder) == before
    assert list(STAGING.iterdir()) == [STAGING / ".lock"]


def test_file_and_folder_outputs_swap_together() -> None:
    folder, file = Path("models/dlsa/ce"), Path("banks/ce.h5")
    with StageOutputs(folders=[folder], files=[file]) as out:
        (out.staged(folder) / "model.pt").write_bytes(b"model")
        out.staged(file).write_bytes(b"bank")
    assert tree(folder) == {"model.pt": b"model"} and file.read_bytes() == b"bank"


def test_a_journaled_swap_cut_by_a_kill_is_finished_by_the_next_command() -> None:
    first, second = Path("models/dlsa/ce"), Path("results/dlsa/ce")
    with StageOutputs(folders=[first, second]) as out:
        (out.staged(first) / "model.pt").write_text("old")
        (out.staged(second) / "metrics.json").write_text("old")
    # a run that swapped its first folder and was killed before its second
    root = STAGING / "killed"
    (root / "0").mkdir(parents=True)
    (root / "1").mkdir()
    (root / "0" / "model.pt").write_text("new")
    (root / "1" / "metrics.json").write_text("new")
    outputs._write_journal(root, [(root / "0", first), (root / "1", second)])
    outputs.exchange(root / "0", first)
    assert (first / "model.pt").read_text() == "new"
    assert (second / "metrics.json").read_text() == "old"
    recover()
    assert (second / "metrics.json").read_text() == "new"
    assert (first / "model.pt").read_text() == "new"
    assert not root.exists()


def test_a_staging_folder_without_journal_is_dropped_and_outputs_stay() -> None:
    folder = Path("results/classify/ce")
    with StageOutputs(folders=[folder]) as out:
        write_set(out, folder, "old")
    abandoned = STAGING / "abandoned" / "0"
    abandoned.mkdir(parents=True)
    (abandoned / "metrics.json").write_text("half")
    recover()
    assert not (STAGING / "abandoned").exists()
    assert tree(folder)["metrics.json"] == b'{"version": "old"}'


def test_the_staging_folder_of_a_live_run_is_left_alone() -> None:
    folder = Path("results/classify/ce")
    with StageOutputs(folders=[folder]) as running:
        staged = running.staged(folder)
        (staged / "metrics.json").write_text("in progress")
        recover()  # what a second tailbank command does when it starts
        assert (staged / "metrics.json").read_text() == "in progress"


@pytest.mark.parametrize(
    ("blocker", "target", "folder", "message"),
    [
        ("results", "results/classify/ce", True, "results: is a file where tailbank needs a folder"),
        ("results/classify/ce", "results/classify/ce", True, "is a file where tailbank writes a folder"),
        ("banks/ce.h5/", "banks/ce.h5", False, "is a folder where tailbank writes a file"),
    ],
)
def test_blocked_outputs_are_found_before_any_work(
    blocker: str, target: str, folder: bool, message: str
) -> None:
    path = Path(blocker)
    path.parent.mkdir(parents=True, exist_ok=True)
    if blocker.endswith("/"):
        path.mkdir()
    else:
        path.write_text("in the way")
    with pytest.raises(StageError, match=message):
        check_writable(Path(target), folder=folder)
    with pytest.raises(StageError, match=message), StageOutputs(
        folders=[Path(target)] if folder else [], files=[] if folder else [Path(target)]
    ):
        pytest.fail("the stage must not start")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_found_before_any_work() -> None:
    Path("results").mkdir()
    os.chmod("results", 0o500)
    try:
        with pytest.raises(StageError, match="results: the output folder is not writable"):
            check_writable(Path("results/metrics.json"), folder=False)
    finally:
        os.chmod("results", 0o700)


def test_check_space_counts_the_file_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    check_space(Path("banks/ce.h5"), 1 << 20)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1000, 1000))
    with pytest.raises(StageError, match=r"no space left for banks/ce.h5: it needs about 1.0 MiB "
                                         r"and 0.0 MiB are allowed by the file-size limit"):
        check_space(Path("banks/ce.h5"), 1 << 20)


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    (tmp_path / "b" / "x").write_text("b")
    outputs.exchange(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "x").read_text() == "b" and (tmp_path / "b" / "x").read_text() == "a"


def test_exchange_falls_back_to_renames_where_the_kernel_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outputs, "_renameat2", None)
    test_exchange_swaps_two_folders(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
