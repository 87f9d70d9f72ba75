"""Progress: the callbacks the libraries call, and the throttled lines without a terminal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.progress import prefixed
from features.analysis.analyze import analyze_bank
from features.bank import Bank
from features.classifiers import fit_classifier
from features.configs import AnalysisConfig, CascadeConfig, KmeansConfig, KnnConfig, ProbeConfig
from features.dlsa.fit import fit_dlsa
from stages.progress import StepProgress
from tests.features.synthetic import write_bank
from tests.features.test_dlsa import PROVENANCE, TINY, long_tailed_bank


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _quiet(clock: FakeClock, lines: list[str], **kwargs: object) -> StepProgress:
    return StepProgress("classify ce", 50, "epochs", bar=False, clock=clock, every_s=10.0,
                        sink=lines.append, **kwargs)  # type: ignore[arg-type]


def test_without_a_terminal_lines_are_throttled_with_elapsed_time_and_throughput() -> None:
    clock, lines = FakeClock(), []
    with _quiet(clock, lines) as progress:
        for epoch in range(1, 51):
            clock.now += 0.5  # 2 epochs a second: 25 s in all
            progress.report("linear", epoch, 50)
    # one line per 10 s, not one per epoch, then the closing line
    assert lines == [
        "classify ce: linear 20/50, 10.0 s, 2 epochs/s",
        "classify ce: linear 40/50, 20.0 s, 2 epochs/s",
        "classify ce: done in 25.0 s, 2 epochs/s",
    ]


def test_a_slow_step_gives_one_line_not_a_burst() -> None:
    clock, lines = FakeClock(), []
    with _quiet(clock, lines) as progress:
        clock.now += 45.0
        progress.advance_to(1, "train")
        clock.now += 1.0
        progress.advance_to(2, "train")
    assert lines[0] == "classify ce: 1/50 (train), 45.0 s, 0.0222 epochs/s"
    assert len(lines) == 2 and lines[1].startswith("classify ce: done in 46.0 s")


def test_no_line_for_a_failed_or_empty_run() -> None:
    clock, lines = FakeClock(), []
    with _quiet(clock, lines):
        pass
    with pytest.raises(RuntimeError), _quiet(clock, lines) as progress:
        progress.report("linear", 1, 3)
        raise RuntimeError
    assert lines == []


def test_epoch_lines_pass_through_without_a_terminal() -> None:
    clock, lines = FakeClock(), []
    with _quiet(clock, lines) as progress:
        progress.epoch_line("classify ce seed 0 linear: test overall 0.5")
    assert lines == ["classify ce seed 0 linear: test overall 0.5"]


def test_prefixed_names_the_outer_piece() -> None:
    told: list[tuple[str, int, int]] = []
    inner = prefixed(lambda *args: told.append(args), "filter 1/2")
    assert inner is not None
    inner("flow epoch", 3, 5)
    assert told == [("filter 1/2 flow epoch", 3, 5)] and prefixed(None, "x") is None


def _recorder() -> tuple[list[tuple[str, int, int]], object]:
    told: list[tuple[str, int, int]] = []
    return told, lambda what, done, total: told.append((what, done, total))


@pytest.mark.parametrize(("kind", "expected"), [
    ("linear", [("linear", e, 4) for e in range(1, 5)]),
    ("lws", [("linear", e, 4) for e in range(1, 5)] + [("lws", e, 2) for e in range(1, 3)]),
    ("head", []),
])
def test_classifiers_tell_each_epoch(kind: str, expected: list) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [30, 10, 5])
    rows = rng.normal(size=(len(labels), 4)).astype(np.float32)
    logits = rng.normal(size=(len(labels), 3)).astype(np.float32)
    told, progress = _recorder()
    fit_classifier(kind, train_x=rows, train_y=labels, val_x=rows, val_y=labels,
                   class_counts=np.array([30, 10, 5]), config=ProbeConfig(epochs=4, lws_epochs=2),
                   head_logits=(logits, logits), progress=progress)  # type: ignore[arg-type]
    assert told == expected


def test_dlsa_tells_bases_filters_and_remainders() -> None:
    bank = long_tailed_bank()
    told, progress = _recorder()
    config = CascadeConfig(**{**TINY.__dict__, "num_filters": 2})
    fit_dlsa((bank.train_x, bank.train_y, None), (bank.val_x, bank.val_y, None), bank.counts,
             ("linear",), ProbeConfig(epochs=2), config, PROVENANCE,
             progress=progress)  # type: ignore[arg-type]
    pieces = list(dict.fromkeys(what for what, _, _ in told))
    assert pieces == ["base linear", "filter 1/2 flow epoch", "filter 1/2 classifier epoch",
                      "filter 2/2 flow epoch", "filter 2/2 classifier epoch",
                      "remainder 1/2 linear", "remainder 2/2 linear"]
    assert ("filter 2/2 flow epoch", 3, 3) in told and ("base linear", 2, 2) in told
    assert all(1 <= done <= total for _, done, total in told)


def test_analysis_tells_each_step(tmp_path: Path) -> None:
    write_bank(tmp_path / "ce.h5")
    told, progress = _recorder()
    config = AnalysisConfig(knn=KnnConfig(k=3, chunk_rows=16), kmeans=KmeansConfig(niter=5),
                            views=("features",))
    with Bank.open(tmp_path / "ce.h5") as bank:
        analyze_bank(bank, config, progress=progress)  # type: ignore[arg-type]
    assert told == [("posterior", 1, 5), ("features knn", 2, 5), ("features kmeans", 3, 5),
                    ("features representation", 4, 5), ("features probe", 5, 5)]


def test_a_terminal_gets_a_bar_and_no_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    with StepProgress("dlsa ce", 1, "epochs", bar=True, sink=lines.append) as progress:
        progress.report("filter 1/2 flow epoch", 1, 3)
    assert lines == [] and capsys.readouterr().out == ""
