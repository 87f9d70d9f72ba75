"""`tailbank fidelity` on constructed results with known differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from stages import fidelity
from stages.cli import app
from stages.io import write_json, write_npz
from stages.params import parse_params
from tests.stages.conftest import tiny_params
from tests.stages.test_compare import COUNTS, LABELS, predictions

GOOD = [.95, .95, .9, .9, .8, .8]
FAIR = [.9, .9, .8, .7, .5, .5]
POOR = [.7, .7, .6, .5, .3, .3]


def write_classify(method: str, seed: int, kinds: dict[str, list[float]]) -> None:
    """Classifier results; the val accuracy ranks the kinds as their test accuracy does."""
    folder = Path("results/classify") / method / f"seed{seed}"
    predicted = {kind: predictions(share, 10 * seed + index)
                 for index, (kind, share) in enumerate(kinds.items())}
    write_json(folder / "metrics.json", {kind: {"val_overall": float(np.mean(kinds[kind]))}
                                         for kind in kinds})
    write_npz(folder / "predictions.npz", {"index": np.arange(len(LABELS)), "labels": LABELS,
                                           "class_counts": COUNTS, **predicted})


def write_dlsa(method: str, seed: int, base: list[float], paper: list[float],
               gated_filters: int) -> None:
    """DLSA on a balanced_softmax base: the paper cascade at ``paper``; the gate keeps
    ``gated_filters`` filters (0: the base itself)."""
    folder = Path("results/dlsa") / method / f"seed{seed}"
    base_predicted = predictions(base, 100 + seed)
    paper_predicted = predictions(paper, 200 + seed)
    gated = base_predicted if gated_filters == 0 else paper_predicted
    write_json(folder / "metrics.json", {"balanced_softmax": {
        "val_overall_dlsa": 0.8, "filters": gated_filters}})
    write_npz(folder / "predictions.npz", {
        "index": np.arange(len(LABELS)), "labels": LABELS, "class_counts": COUNTS,
        "balanced_softmax": base_predicted, "balanced_softmax+dlsa": gated,
        "balanced_softmax+dlsa_paper": paper_predicted})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    raw = tiny_params()
    raw["seeds"] = [0, 1]
    raw["methods"] = {name: raw["methods"][name]
                      for name in ("ce", "bsce", "paco", "gml_teacher", "gml_student")}
    raw["classify"]["kinds"] = ["head", "balanced_softmax", "crt"]
    raw["dlsa"]["base_kinds"] = ["balanced_softmax"]
    raw["eval"].update(many_above=60, few_below=20)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for seed in (0, 1):
        # BSCE far above CE; the student far below its teacher; crt (best on val of the
        # re-balanced kinds) above ce's head; paco left unrun
        write_classify("ce", seed, {"head": POOR, "balanced_softmax": FAIR, "crt": GOOD})
        write_classify("bsce", seed, {"head": GOOD, "balanced_softmax": GOOD, "crt": GOOD})
        write_classify("gml_teacher", seed, {"head": GOOD, "balanced_softmax": GOOD,
                                             "crt": GOOD})
        write_classify("gml_student", seed, {"head": POOR, "balanced_softmax": POOR,
                                             "crt": POOR})
        # DLSA: on ce the paper cascade helps a lot; on bsce it costs, and the gate drops it
        write_dlsa("ce", seed, FAIR, GOOD, gated_filters=3)
        write_dlsa("bsce", seed, GOOD, POOR, gated_filters=0)
    return tmp_path


def rows(output: str) -> dict[str, list[str]]:
    found = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("| claim"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            found[cells[0]] = cells
    return found


def test_each_claim_gets_the_verdict_its_results_show(project: Path) -> None:
    done = CliRunner().invoke(app, ["fidelity", "--out", "fidelity.json"])
    assert done.exit_code == 0, done.output
    table = rows(done.output)
    assert done.output.startswith("digits_lt, seed(s) 0, 1; 95 % CI of A - B: the wider of")
    verdicts = {claim: cells[7] for claim, cells in table.items()}
    assert verdicts == {
        "BSCE > CE": "holds",
        "student >= teacher (gml_student)": "fails",
        "PaCo > BSCE": "not run",
        "decoupled re-balancing > joint CE head": "holds",
        "DLSA > base (ce)": "holds",
        "gated DLSA >= base (ce)": "holds",
        "DLSA > base (bsce)": "fails",
        "gated DLSA >= base (bsce)": "holds",
        "DLSA > base (paco)": "not run",
        "gated DLSA >= base (paco)": "not run",
        "DLSA > base (gml_teacher)": "not run",
        "gated DLSA >= base (gml_teacher)": "not run",
        "DLSA > base (gml_student)": "not run",
        "gated DLSA >= base (gml_student)": "not run",
    }
    decoupled = table["decoupled re-balancing > joint CE head"]
    assert decoupled[1:3] == ["ce:crt", "ce:head"]  # crt is the best re-balanced kind on val
    # the accuracies are those the constructed predictions hold, pooled over the two seeds
    bsce = table["BSCE > CE"]
    assert bsce[1:5] == ["bsce:head", "ce:head", "0.883", "0.517"]
    assert bsce[5] == "+36.7"
    assert table["gated DLSA >= base (bsce)"][5:7] == ["+0.0", "[+0.0, +0.0]"]
    assert table["gated DLSA >= base (ce)"][8] == "filters kept per seed: 3, 3 of 3"
    assert ("results/classify/paco/seed0/predictions.npz: no predictions"
            in table["PaCo > BSCE"][8])
    written = json.loads(Path("fidelity.json").read_text())
    assert written["seeds"] == [0, 1] and len(written["claims"]) == len(table)
    first = written["claims"][0]
    assert first["claim"] == "BSCE > CE" and first["difference"]["method"] == "bootstrap+t"
    assert first["difference"]["low"] > 0.3


def test_the_interval_of_one_seed_is_the_row_bootstrap(project: Path) -> None:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["seeds"] = [0]
    params = parse_params(raw, "params.yaml")
    claim = next(c for c in fidelity.claims(params) if c.title == "BSCE > CE")
    finding = fidelity.find(claim, params)
    assert finding.judgement is not None
    assert finding.judgement.difference.method == "bootstrap"
    assert finding.first_accuracy == pytest.approx(0.883, abs=1e-3)


def test_a_params_file_without_a_method_kind_has_no_claim_of_it(project: Path) -> None:
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["methods"] = {"ce": raw["methods"]["ce"], "bsce": raw["methods"]["bsce"]}
    titles = [claim.title for claim in fidelity.claims(parse_params(raw, "params.yaml"))]
    assert titles == ["BSCE > CE", "decoupled re-balancing > joint CE head", "DLSA > base (ce)",
                      "gated DLSA >= base (ce)", "DLSA > base (bsce)",
                      "gated DLSA >= base (bsce)"]


def test_repro_runs_the_stages_the_claims_read(project: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr(fidelity.subprocess, "run", lambda args, check: calls.append(args) or Done())
    done = CliRunner().invoke(app, ["fidelity", "--repro"])
    assert done.exit_code == 0, done.output
    assert calls == [["dvc", "repro", "classify-ce", "dlsa-ce", "classify-bsce", "dlsa-bsce",
                      "classify-paco", "dlsa-paco", "classify-gml_teacher", "dlsa-gml_teacher",
                      "classify-gml_student", "dlsa-gml_student"]]
    Done.returncode = 1
    failed = CliRunner().invoke(app, ["fidelity", "--repro"])
    assert failed.exit_code == 2 and "dvc repro classify-ce" in failed.output


def test_out_naming_a_folder_is_one_line(project: Path) -> None:
    Path("somewhere").mkdir()
    done = CliRunner().invoke(app, ["fidelity", "--out", "somewhere"])
    assert done.exit_code == 2
    assert "--out somewhere: a folder is there; name a file" in done.output
