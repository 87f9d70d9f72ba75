"""DVC's own views: one metrics file per method, top-level plots that overlay the methods,
per-method plot titles, epochs counted from 1, and the offline page of `dvc plots show`."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from features.report import ReportInput
from pipeline.engine.records import EpochRecord
from stages import dag, report, views
from stages.io import write_json
from stages.params import load_params
from stages.pretrain import CurveLogger
from tests.stages.conftest import REPO, tiny_params
from tests.stages.dvc_projects import dvc
from tests.stages.test_report import params_with, write_classify, write_dlsa

METHODS = list(load_params(REPO / "params.yaml").model_dump(mode="json")["methods"])


@pytest.fixture(scope="module")
def rendered() -> dict:
    params = load_params(REPO / "params.yaml").model_dump(mode="json")
    return dag.view(params["methods"], params["imports"], params["data"]["dataset"])


def test_the_metrics_are_one_small_file_per_method(rendered) -> None:
    """`dvc metrics show` is a table of one row per method; per-seed details are outs."""
    report_stage = rendered["stages"]["report"]
    declared = [next(iter(entry)) for entry in report_stage["metrics"]]
    assert declared == [f"results/summary/{method}.json" for method in METHODS]
    assert all(entry[path] == {"cache": False}
               for entry, path in zip(report_stage["metrics"], declared, strict=True))
    others = [stage.get("do", stage).get("metrics") for name, stage in rendered["stages"].items()
              if name != "report"]
    assert others == [None] * len(others)
    assert "reports/plots" in [next(iter(out)) for out in report_stage["outs"]]


def test_top_level_plots_overlay_every_method(rendered) -> None:
    plots = {next(iter(entry)): next(iter(entry.values())) for entry in rendered["plots"]}
    assert list(plots) == ["val_accuracy", "per_class_accuracy",
                           *(f"tsne_{method}" for method in METHODS)]
    assert plots["val_accuracy"]["y"] == {f"reports/plots/{m}/curves.csv": "val_acc"
                                          for m in METHODS}
    assert plots["val_accuracy"]["x"] == "epoch"
    assert plots["per_class_accuracy"]["y"] == {f"reports/plots/{m}/per_class.csv": "accuracy"
                                                for m in METHODS}
    for method in METHODS:
        tsne = plots[f"tsne_{method}"]
        assert tsne["y"] == {f"reports/plots/{method}/tsne.csv": "y"}
        assert method in tsne["title"]
        template = json.loads((REPO / tsne["template"]).read_text())
        assert template["encoding"]["color"]["field"] == "group"


def test_per_method_plots_name_their_method_and_seed(rendered) -> None:
    titles = []
    for method in METHODS:
        for stage in ("pretrain", "classify", "dlsa", "analyze"):
            for entry in rendered["stages"][f"{stage}-{method}"]["do"].get("plots", []):
                (props,) = entry.values()
                assert f", {method} seed ${{item}}" in props["title"], (stage, props)
                titles.append(props["title"])
    assert len(titles) == len(set(titles))  # no two plots share a title
    assert "plots" not in rendered["stages"]["classify-ce"]["do"]  # overlaid at the top
    curves = rendered["stages"]["pretrain-ce"]["do"]["plots"]
    assert all(next(iter(entry.values()))["x_label"] == "epoch" for entry in curves)


def test_curves_count_epochs_from_one(tmp_path: Path) -> None:
    """DVCLive's step is the epoch the logs and `best_epoch` name (1-based)."""
    with CurveLogger(tmp_path / "live") as curves:
        for epoch in range(3):
            curves.log(EpochRecord(epoch=epoch, train_loss=1.0 / (epoch + 1), train_acc=0.5,
                                   val_acc=0.1 * epoch, lr=0.1))
    rows = views.read_curves(tmp_path / "live")
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert json.loads((tmp_path / "live/metrics.json").read_text())["step"] == 3


def test_mean_curves_average_the_seeds_over_their_common_epochs() -> None:
    one = [{"epoch": "1", "val_acc": "0.2", "train_acc": "0.5", "train_loss": "1"},
           {"epoch": "2", "val_acc": "0.4", "train_acc": "0.6", "train_loss": "0.5"}]
    two = [{"epoch": "1", "val_acc": "0.4", "train_acc": "0.7", "train_loss": "3"}]
    assert views.mean_curves([one, two]) == [
        {"epoch": "1", "val_acc": "0.3", "train_acc": "0.6", "train_loss": "2"}]
    assert views.mean_curves([[], []]) == []


def test_the_report_writes_the_summary_and_the_overlay_tables(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for method in ("ce", "bsce"):
        write_classify(method)
    write_dlsa("ce")
    write_json(Path("results/analyze/ce/seed0/analysis.json"), {"views": {}})
    report.run(params_with(("ce", "bsce")))
    ce = flat(json.loads(Path("results/summary/ce.json").read_text()))
    assert sorted(ce) == sorted(views.SUMMARY_KEYS)
    # percent: the classifier chosen on val (linear, first on the tie), its shot groups
    assert (ce["acc"], ce["many"], ce["med"], ce["few"]) == (80.0, 90.0, 80.0, 60.0)
    # one seed and no predictions.npz: no interval (rather than a zero-width one)
    assert ce["ci.lo"] is None and ce["ci.hi"] is None
    assert ce["dlsa"] == 0.0  # DLSA changed only `few` in write_dlsa
    bsce = flat(json.loads(Path("results/summary/bsce.json").read_text()))
    assert sorted(bsce) == sorted(views.SUMMARY_KEYS) and bsce["dlsa"] is None
    for method in ("ce", "bsce"):
        folder = Path("reports/plots") / method
        assert _header(folder / "curves.csv") == list(views.CURVE_COLUMNS)
        assert _header(folder / "tsne.csv") == list(views.TSNE_COLUMNS)
        with (folder / "per_class.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert [(row["train_count"], row["accuracy"]) for row in rows] == [("100", "1"),
                                                                          ("10", "0.5")]


def flat(tree: dict, prefix: str = "") -> dict:
    """Nested keys joined by "." as `dvc metrics show` names them."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _header(path: Path) -> list[str]:
    return path.read_text().splitlines()[0].split(",")


def test_the_plots_page_carries_vega_and_no_cdn() -> None:
    """`dvc plots show` draws offline: DVC's config points at a page with Vega inline."""
    config = (REPO / ".dvc/config").read_text()
    assert "html_template = ../docs/dvc/plots_template.html" in config
    page = (REPO / "docs/dvc/plots_template.html").read_text()
    assert page.count("{plot_divs}") == 1 and "{scripts}" not in page
    assert "cdn.jsdelivr" not in page and "https://cdn" not in page
    for name in ("vega", "vega-lite", "vega-embed"):
        assert f"<!-- {name} " in page
    assert "University of Washington" in (REPO / "docs/dvc/VEGA_LICENSE").read_text()


def test_dvc_shows_one_row_per_method_and_a_handful_of_columns(tmp_path: Path) -> None:
    """`dvc metrics show` and the columns of `dvc exp show` in a project of one method (no
    stage runs: the summary file is written here, as the report stage would)."""
    params = tiny_params()
    params["methods"] = {"ce": params["methods"]["ce"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    dag.write(params, tmp_path)
    item = ReportInput(method="ce", classify={"cosine": {
        "overall": 0.8634, "many": 0.95, "medium": 0.9, "few": 0.7, "val_overall": 0.8,
        "ci": {"overall": [0.84, 0.88]}}})
    views.write_summary(tmp_path / "results/summary", item, 0.0125)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc(tmp_path, "init", "-q")
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=tmp_path, check=True)
    shown = json.loads(dvc(tmp_path, "metrics", "show", "--json"))
    (data,) = (entry["data"] for entry in shown.values())
    assert data == {"results/summary/ce.json": {"data": {
        "acc": 86.3, "ci": {"lo": 84.0, "hi": 88.0}, "many": 95.0, "med": 90.0, "few": 70.0,
        "dlsa": 1.2}}}
    header = dvc(tmp_path, "exp", "show", "--csv", "--no-pager").splitlines()[0].split(",")
    # metrics come after the Experiment's own columns, params (every params.yaml key) after
    metrics = header[header.index("parent") + 1:header.index("analyze.chunk_rows")]
    assert metrics == sorted(views.SUMMARY_KEYS)
