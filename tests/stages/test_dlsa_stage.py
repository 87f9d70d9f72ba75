"""`tailbank dlsa` and `tailbank route` on a small synthetic long-tailed bank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from features.bank import BankMeta, BankWriter
from stages.cli import app
from tests.stages.conftest import tiny_params

NUM_CLASSES = 6
DIM = 8
# three head classes, three tail classes (<= 50 training images)
COUNTS = np.array([150, 110, 80, 30, 15, 8])


def _rows(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = 3.0 * np.eye(NUM_CLASSES, DIM)
    labels = np.repeat(np.arange(len(counts)), counts)
    features = centres[labels] + rng.normal(size=(len(labels), DIM))
    return features.astype(np.float32), labels


def write_bank(path: Path, dim: int = DIM, num_classes: int = NUM_CLASSES,
               checkpoint: str = "b" * 64) -> None:
    """A long-tailed bank of Gaussian classes (the first ``num_classes`` of ``COUNTS``),
    dumped from the backbone checkpoint whose sha256 is ``checkpoint``."""
    rng = np.random.default_rng(0)
    train_counts = COUNTS[:num_classes]
    meta = BankMeta(method="ce", backbone="resnet20", dataset="digits_lt",
                    num_classes=num_classes, feature_dim=dim, seed=0,
                    params_digest="a" * 64, checkpoint_sha256=checkpoint,
                    class_counts=train_counts.astype(np.int64), class_names=None,
                    tailbank_version="0.1.0")
    with BankWriter(path, meta) as writer:
        for split, counts in (("train", train_counts), ("val", np.full(num_classes, 12)),
                              ("test", np.full(num_classes, 20))):
            features, labels = _rows(counts, rng)
            features = features[:, :dim] if dim <= DIM else np.pad(features, ((0, 0), (0, dim - DIM)))
            logits = rng.normal(size=(len(labels), num_classes)).astype(np.float32)
            writer.append(split, features=features, labels=labels,
                          index=np.arange(len(labels)), logits=logits)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    params = tiny_params()
    params["methods"] = {"ce": params["methods"]["ce"]}
    params["classify"].update(epochs=3)
    params["dlsa"] = {
        "base_kinds": ["balanced_softmax", "head"],
        "num_filters": 2,
        "device": "cpu",
        "flow": {"epochs": 4, "batch_size": 128, "num_clusters": 4, "selection": "likelihood"},
        "classifier": {"epochs": 5},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "banks").mkdir()
    write_bank(tmp_path / "banks/ce/seed0.h5")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_dlsa_writes_cascade_and_base_vs_dlsa_metrics(project: Path) -> None:
    done = invoke("dlsa", "--method", "ce")
    assert done.exit_code == 0, done.output
    metrics = json.loads((project / "results/dlsa/ce/seed0/metrics.json").read_text())
    assert set(metrics) == {"balanced_softmax", "head"}
    for entry in metrics.values():
        for side in ("base", "dlsa", "dlsa_paper"):
            assert {"overall", "many", "medium", "few", "mcc", "nmi"} <= set(entry[side])
        assert entry["filters"] in (0, 1, 2) and len(entry["gate_accuracy"]) == 3
        # the gate's own val rows: the kept cascade, never below the base, and a cascade is
        # kept only on its sign test's evidence (Holm over the 2 cascades at 0.05)
        gate = entry["gate_accuracy"]
        assert entry["val_overall_dlsa"] == gate[entry["filters"]] >= gate[0]
        assert len(entry["gate_p"]) == 2
        if entry["filters"]:
            assert min(entry["gate_p"]) < 0.05 / 2
    filters = json.loads((project / "results/dlsa/ce/seed0/filters.json").read_text())
    assert [report["index"] for report in filters] == [0, 1]
    for report in filters:
        assert set(report["routed_accuracy"]) == {"val", "test"}
        for split in ("val", "test"):
            assert set(report["routed_accuracy"][split]) == {
                "cluster_aided", "balanced_softmax", "head"}
        assert report["init"] in ("head", "base balanced_softmax")
    # each filter routes 30 % of the training rows that reach it
    seen = 1.0
    for report in filters:
        assert report["routed_share"]["train"] == pytest.approx(0.3 * seen, abs=2 / COUNTS.sum())
        seen -= report["routed_share"]["train"]
    csv_lines = (project / "results/dlsa/ce/seed0/filters.csv").read_text().splitlines()
    assert csv_lines[0] == "filter,separation_accuracy,chance,routed_share" and len(csv_lines) == 3
    assert {p.name for p in (project / "models/dlsa/ce/seed0").iterdir()} == {"model.pt"}
    assert not (project / "checkpoints/dlsa/ce/seed0").exists()


def test_dlsa_outputs_are_byte_identical_across_runs(project: Path) -> None:
    outputs = ("models/dlsa/ce/seed0/model.pt", "results/dlsa/ce/seed0/metrics.json",
               "results/dlsa/ce/seed0/filters.json")
    assert invoke("dlsa", "--method", "ce").exit_code == 0
    first = {name: (project / name).read_bytes() for name in outputs}
    for name in outputs:
        (project / name).unlink()
    assert invoke("dlsa", "--method", "ce").exit_code == 0
    for name in outputs:
        assert (project / name).read_bytes() == first[name], f"{name} changed between runs"


def test_route_applies_the_cascade_without_retraining(project: Path) -> None:
    assert invoke("dlsa", "--method", "ce").exit_code == 0
    done = invoke("route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/ce/seed0.h5",
                  "--base", "balanced_softmax", "--out", "predictions")
    assert done.exit_code == 0, done.output
    rows = (project / "predictions/test.csv").read_text().splitlines()
    assert rows[0] == "index,label,filter,prediction" and len(rows) == 1 + 20 * NUM_CLASSES
    filters = {int(row.split(",")[2]) for row in rows[1:]}
    assert filters <= {-1, 0, 1} and -1 in filters
    metrics = json.loads((project / "results/dlsa/ce/seed0/metrics.json").read_text())
    accuracy = float(done.output.split("test: accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(metrics["balanced_softmax"]["dlsa"]["overall"], abs=1e-4)


def test_route_refuses_a_bank_of_another_width(project: Path) -> None:
    assert invoke("dlsa", "--method", "ce").exit_code == 0
    write_bank(project / "banks/wide.h5", dim=DIM + 2)
    done = invoke("route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/wide.h5")
    assert done.exit_code == 2
    assert done.output.strip() == (
        "tailbank: error: banks/wide.h5: bank has 10 features and 6 classes but the DLSA cascade "
        "was fitted on 8 features and 6 classes; refit the cascade on this bank"
    )


def test_route_takes_the_gated_filters_unless_told(project: Path) -> None:
    assert invoke("dlsa", "--method", "ce").exit_code == 0
    metrics = json.loads((project / "results/dlsa/ce/seed0/metrics.json").read_text())
    common = ("route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/ce/seed0.h5",
              "--base", "balanced_softmax")
    done = invoke(*common, "--filters", "2")
    assert done.exit_code == 0, done.output
    accuracy = float(done.output.split("test: accuracy ")[1].split()[0])
    assert accuracy == pytest.approx(metrics["balanced_softmax"]["dlsa_paper"]["overall"],
                                     abs=1e-4)
    done = invoke(*common, "--filters", "3")
    assert done.exit_code == 2
    assert "--filters 3: the model has 2 filters; give 0 to 2" in done.output


def test_route_names_an_unknown_base(project: Path) -> None:
    assert invoke("dlsa", "--method", "ce").exit_code == 0
    done = invoke("route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/ce/seed0.h5", "--base", "lws")
    assert done.exit_code == 2
    assert "no base classifier 'lws'; saved: balanced_softmax, head" in done.output


def _outputs(project: Path) -> dict[str, bytes]:
    folders = ("results/classify", "results/dlsa", "models/dlsa", "predictions")
    return {str(path.relative_to(project)): path.read_bytes()
            for folder in folders for path in sorted((project / folder).rglob("*"))
            if path.is_file()}


def test_a_bank_over_the_memory_budget_is_streamed_with_the_same_outputs(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """classify, dlsa and route under a 16 KiB budget (the bank's rows take ~33 KiB) write the
    same bytes as with the whole bank in memory, and never read a whole split's rows at once."""
    import features.bank.rows
    import features.classifiers.fitted
    import features.dlsa.classifier
    import features.dlsa.training

    # blocks of scoring and statistics are fixed sizes (4096 and 1024 rows); shrink them
    # below the splits for both runs so that no block is a whole split
    for module, name in ((features.classifiers.fitted, "_EVAL_BATCH"), (features.dlsa.classifier, "EVAL_ROWS"),
                         (features.dlsa.training, "EVAL_ROWS"), (features.bank.rows, "MOMENT_ROWS")):
        monkeypatch.setattr(module, name, 50)

    def run_all(memory_mb: str) -> dict[str, bytes]:
        for command in (("classify", "--method", "ce"), ("dlsa", "--method", "ce"),
                        ("route", "--model", "models/dlsa/ce/seed0", "--bank", "banks/ce/seed0.h5",
                         "--memory-mb", memory_mb)):
            done = invoke(*command)
            assert done.exit_code == 0, done.output
        return _outputs(project)

    in_memory = run_all("4096")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["memory"] = {"budget_mb": 16 / 1024}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    from features.bank import Bank

    whole_reads: list[tuple[str, int]] = []
    gathered: list[int] = []
    read, read_rows, gather = Bank._read, Bank.read_rows, Bank.gather

    def spy_read(self: Bank, split: str, field: str) -> np.ndarray:
        values = read(self, split, field)
        if field in ("features", "logits"):
            whole_reads.append((f"{split}/{field}", values.nbytes))
        return values

    def spy_read_rows(self: Bank, split: str, field: str, start: int, stop: int) -> np.ndarray:
        values = read_rows(self, split, field, start, stop)
        if start == 0 and stop >= self.size(split):
            whole_reads.append((f"{split}/{field}", values.nbytes))
        return values

    def spy_gather(self: Bank, split: str, field: str, positions: np.ndarray) -> np.ndarray:
        gathered.append(len(positions))
        return gather(self, split, field, positions)

    monkeypatch.setattr(Bank, "_read", spy_read)
    monkeypatch.setattr(Bank, "read_rows", spy_read_rows)
    monkeypatch.setattr(Bank, "gather", spy_gather)
    streamed = run_all(str(16 / 1024))
    assert streamed == in_memory
    # classify and dlsa loaded no split whole (route loads a split whole when it alone fits,
    # as val and test do); training read 4 KiB windows of 128 rows
    assert whole_reads and all(size <= 16 * 1024 for _, size in whole_reads)
    assert not any(name.startswith("train/") for name, _ in whole_reads)
    assert max(gathered) == 128
