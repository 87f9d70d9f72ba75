"""The one DLSA model file: cascade + base classifiers + bank provenance, read without pickle."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from features.bank import BankMeta
from features.classifiers import (
    FittedClassifier,
    classifier_from_payload,
    classifier_payload,
    fit_classifier,
)
from features.configs import CLASSIFIER_KINDS, CascadeConfig, FlowTrainConfig, ProbeConfig
from features.dlsa.cascade import Cascade, fit_cascade
from features.dlsa.io import load_dlsa_model, save_dlsa_model
from features.dlsa.model import BankProvenance, DLSAModel
from features.errors import FeaturesError

CONFIG = CascadeConfig(
    num_filters=2,
    flow=FlowTrainConfig(num_clusters=3, epochs=2, batch_size=32, selection="likelihood"),
    classifier_epochs=2,
)
PROVENANCE = BankProvenance("ce", "resnet20", "synthetic", "a" * 64)


@pytest.fixture(scope="module")
def rows() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    counts = np.array([60, 30, 10, 5])
    centres = 3.0 * np.eye(4, 6)

    def draw(per_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(4), per_class)
        return (centres[labels] + rng.normal(size=(len(labels), 6))).astype(np.float32), labels

    train_x, train_y = draw(counts)
    val_x, val_y = draw(np.full(4, 8))
    logits = rng.normal(size=(len(train_y), 4)).astype(np.float32)
    val_logits = rng.normal(size=(len(val_y), 4)).astype(np.float32)
    return {"train_x": train_x, "train_y": train_y, "val_x": val_x, "val_y": val_y,
            "counts": counts, "logits": logits, "val_logits": val_logits}


@pytest.fixture(scope="module")
def bases(rows: dict[str, np.ndarray]) -> dict[str, FittedClassifier]:
    config = ProbeConfig(epochs=2, crt_epochs=1, lws_epochs=1)
    return {
        kind: fit_classifier(
            kind, train_x=rows["train_x"], train_y=rows["train_y"], val_x=rows["val_x"],
            val_y=rows["val_y"], class_counts=rows["counts"], config=config,
            head_logits=(rows["logits"], rows["val_logits"]),
        )
        for kind in CLASSIFIER_KINDS
    }


@pytest.fixture(scope="module")
def cascade(rows: dict[str, np.ndarray]) -> Cascade:
    return fit_cascade(rows["train_x"], rows["train_y"], rows["val_x"], rows["val_y"],
                       rows["counts"], CONFIG)[0]


@pytest.mark.parametrize("kind", CLASSIFIER_KINDS)
def test_every_classifier_kind_survives_its_plain_payload(
    kind: str, bases: dict[str, FittedClassifier], rows: dict[str, np.ndarray], tmp_path: Path
) -> None:
    fitted = bases[kind]
    path = tmp_path / "classifier.pt"
    torch.save(classifier_payload(fitted), path)
    loaded = classifier_from_payload(torch.load(path, weights_only=True), str(path))
    assert (loaded.kind, loaded.selected, loaded.input_field) == (
        fitted.kind, fitted.selected, fitted.input_field)
    inputs = rows["val_logits"] if fitted.input_field == "logits" else rows["val_x"]
    np.testing.assert_array_equal(loaded.logits(inputs), fitted.logits(inputs))


def test_model_round_trip_routes_and_scores_like_the_fitted_one(
    cascade: Cascade, bases: dict[str, FittedClassifier], rows: dict[str, np.ndarray],
    tmp_path: Path,
) -> None:
    path = tmp_path / "model.pt"
    remainders = {"cosine": [bases["linear"], bases["cosine"]]}
    gates = {kind: index % 3 for index, kind in enumerate(bases)}
    save_dlsa_model(DLSAModel(cascade, bases, remainders, gates, PROVENANCE), path)
    loaded = load_dlsa_model(path)
    assert loaded.bank == PROVENANCE and list(loaded.bases) == list(bases)
    assert loaded.gates == gates and list(loaded.remainders) == ["cosine"]
    again = loaded.remainder("cosine", 1)
    np.testing.assert_array_equal(again.logits(rows["val_x"]), bases["linear"].logits(rows["val_x"]))
    assert loaded.cascade.config == cascade.config
    before, after = cascade.route(rows["val_x"]), loaded.cascade.route(rows["val_x"])
    np.testing.assert_array_equal(before.assignment, after.assignment)
    np.testing.assert_array_equal(before.logits, after.logits)
    base, again = bases["cosine"], loaded.bases["cosine"]
    np.testing.assert_array_equal(base.logits(rows["val_x"]), again.logits(rows["val_x"]))
    save_dlsa_model(loaded, tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == path.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


class _RunsCode:
    """An object whose unpickling calls os.mkdir: what a crafted model file would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    evidence = tmp_path / "code-ran"
    path = tmp_path / "model.pt"
    torch.save({"format": "tailbank-dlsa-model/2", "bases": {"x": _RunsCode(evidence)}}, path)
    with pytest.raises(FeaturesError, match="not a readable DLSA model"):
        load_dlsa_model(path)
    assert not evidence.exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"format": "something-else/1"}, "expected 'tailbank-dlsa-model/2'"),
        ([1, 2], "has format 'list'"),
        ({"format": "tailbank-dlsa-model/2", "bank": {}}, "damaged DLSA model"),
    ],
)
def test_foreign_or_damaged_files_are_one_line(payload: object, message: str,
                                                tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(payload, path)
    with pytest.raises(FeaturesError, match=message):
        load_dlsa_model(path)
    (tmp_path / "garbage.pt").write_bytes(b"not torch")
    with pytest.raises(FeaturesError, match="not a readable DLSA model"):
        load_dlsa_model(tmp_path / "garbage.pt")
    with pytest.raises(FeaturesError, match="no DLSA model here"):
        load_dlsa_model(tmp_path / "missing.pt")


def test_a_bank_of_another_backbone_checkpoint_is_refused(
    cascade: Cascade, rows: dict[str, np.ndarray]
) -> None:
    model = DLSAModel(cascade, {}, {}, {}, PROVENANCE)
    meta = BankMeta(method="ce", backbone="resnet20", dataset="other", num_classes=4,
                    feature_dim=6, seed=0, params_digest="0" * 64,
                    checkpoint_sha256=PROVENANCE.checkpoint_sha256,
                    class_counts=rows["counts"].astype(np.int64), class_names=None,
                    tailbank_version="0")
    model.check_bank(meta, "banks/new.h5")  # same checkpoint, new images: fine
    other = dataclasses.replace(meta, checkpoint_sha256="b" * 64, backbone="resnet32")
    with pytest.raises(FeaturesError, match=r"banks/new.h5: dumped from another backbone "
                                            r"\(method ce, backbone resnet32, checkpoint bbbb"):
        model.check_bank(other, "banks/new.h5")
