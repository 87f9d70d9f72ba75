"""`tailbank compare` and the report's significance marks, on constructed predictions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from stages import report
from stages.cli import app
from stages.io import write_csv, write_json, write_npz
from stages.params import parse_params
from tests.stages.conftest import tiny_params

COUNTS = np.array([120, 80, 60, 30, 15, 8])  # many > 60: 2 classes; medium 2; few < 20: 2
PER_CLASS = 100  # test rows per class
LABELS = np.repeat(np.arange(len(COUNTS)), PER_CLASS)


def predictions(accuracy_per_class: list[float], seed: int) -> np.ndarray:
    """Predicted classes: a fixed share of each class right (which rows depends on seed)."""
    rng = np.random.default_rng(seed)
    predicted = LABELS.copy()
    for label, accuracy in enumerate(accuracy_per_class):
        rows = np.flatnonzero(LABELS == label)
        wrong = rng.choice(rows, size=round((1 - accuracy) * len(rows)), replace=False)
        predicted[wrong] = (label + 1) % len(COUNTS)
    return predicted


def write_method(method: str, seed: int, predicted: dict[str, np.ndarray]) -> None:
    folder = Path("results/classify") / method / f"seed{seed}"
    metrics = {}
    for index, (kind, values) in enumerate(predicted.items()):
        correct = values == LABELS
        groups = {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
        metrics[kind] = {"overall": float(correct.mean()), "mcc": 0.5, "nmi": 0.5, "ece": 0.05,
                         # the first kind is the one chosen on val
                         "val_overall": 0.9 - 0.1 * index,
                         **{g: float(correct[np.isin(LABELS, c)].mean())
                            for g, c in groups.items()}}
        write_csv(folder / "per_class" / f"{kind}.csv", ("class", "train_count", "accuracy"),
                  [(c, int(COUNTS[c]), float(correct[LABELS == c].mean())) for c in range(6)])
    write_json(folder / "metrics.json", metrics)
    write_npz(folder / "predictions.npz", {
        "index": np.arange(len(LABELS)), "labels": LABELS, "class_counts": COUNTS,
        **{kind: values for kind, values in predicted.items()}})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    raw["methods"] = {name: raw["methods"][name] for name in ("ce", "bsce", "cbs")}
    raw["classify"]["kinds"] = ["linear", "cosine"]
    raw["eval"].update(many_above=60, few_below=20)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    # bsce wins overall by a wide margin; on the few-shot classes bsce and ce are equal
    write_method("ce", 0, {"linear": predictions([.9, .9, .8, .7, .5, .5], 0),
                           "cosine": predictions([.8, .8, .7, .6, .4, .4], 1)})
    write_method("bsce", 0, {"linear": predictions([.99, .99, .95, .9, .5, .5], 2),
                             "cosine": predictions([.8, .8, .7, .6, .4, .4], 3)})
    write_method("cbs", 0, {"linear": predictions([.6, .6, .6, .6, .3, .3], 4),
                            "cosine": predictions([.6, .6, .6, .6, .3, .3], 5)})
    return tmp_path


def test_compare_finds_the_known_difference(project: Path) -> None:
    done = CliRunner().invoke(app, ["compare", "bsce", "ce"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == ("A = bsce:linear, B = ce:linear; 1 seed(s) (0), 600 test rows")
    overall = next(line for line in lines if line.startswith("overall"))
    fields = overall.split()
    # linear: bsce is right on 483 of 600 rows, ce on 430: +53/600 = +0.088
    assert fields[1:5] == ["600", "0.805", "0.717", "+0.088"]
    low, high = (float(x) for x in re.findall(r"[+-]\d\.\d{3}", overall.split("[")[1])[:2])
    assert 0 < low < 0.088 < high
    assert fields[7:9] == ["<", "5e-04"]  # bootstrap p: below 1 / resamples
    few = next(line for line in lines if line.startswith("few")).split()
    assert few[4] == "+0.000" and float(few[7]) > 0.5  # equal accuracy on other rows
    assert lines[-1] == ("Overall: bsce:linear beats ce:linear by 0.088 (paired bootstrap "
                         "p < 5e-04 < 0.05).")


def test_compare_names_a_bad_name_in_one_line(project: Path) -> None:
    for args, fragment in ((["compare", "ce:nope", "bsce"], "'nope' is not in classify.kinds"),
                           (["compare", "ce-x", "bsce"], "method[:classifier][+dlsa|+dlsa_paper|+dlsa_base]"),
                           (["compare", "paco", "bsce"], "no method 'paco'")):
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 2 and fragment in done.output, done.output


def test_report_bolds_a_resolved_win_and_marks_a_tie(project: Path) -> None:
    params = parse_params(yaml.safe_load(Path("params.yaml").read_text()), "params.yaml")
    report.run(params)
    summary = Path("reports/summary.md").read_text()
    row = {m: next(line for line in summary.splitlines() if line.startswith(f"| {m} | linear |"))
           for m in ("ce", "bsce", "cbs")}
    cells = {m: [cell.strip() for cell in row[m].split("|")[1:-1]] for m in row}
    # overall: bsce's lead over every other row is resolved: bold, nobody tied
    assert cells["bsce"][2].startswith("**0.805") and "\u2248" not in cells["ce"][2]
    # few-shot: bsce and ce are equal on those rows: a tie, not bold
    assert cells["bsce"][5].endswith("\u2248") and cells["ce"][5].endswith("\u2248")
    assert "**" not in cells["bsce"][5]
    assert "\u00b1" in cells["ce"][2]  # one seed: bootstrap interval
    text = summary.split("## Ranking")[1]
    assert "Highest overall test accuracy: bsce with the linear classifier (0.805), resolved" in text
    assert "not resolved" in text
    # the method's summary metrics (dvc metrics show): percent, no DLSA run here
    summary = json.loads(Path("results/summary/bsce.json").read_text())
    assert summary["acc"] == 80.5 and summary["dlsa"] is None
