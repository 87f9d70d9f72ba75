"""Stage ``dlsa@<method>``: a DLSA cascade on a bank, scored on top of each base classifier.

The cascade (flow filters and cluster-aided classifiers) depends only on the bank, so one
cascade is fitted per method; each kind of ``dlsa.base_kinds`` classifies the rows the last
filter leaves, and the metrics put "base" and "base + DLSA" side by side. Every epoch is chosen
on the val split; the test split is only scored.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from features.classifiers import FittedClassifier
from features.dlsa import Cascade, CascadeConfig, filter_report, fit_cascade, save_cascade
from features.errors import FeaturesError
from features.flow_training import FlowTrainConfig
from features.metrics import evaluate
from stages.classify import (
    SPLITS,
    SplitData,
    classifier_logits,
    clean,
    fit_on_bank,
    fmt,
    on_bank_splits,
    probe_config,
)
from stages.errors import StageError
from stages.io import json_ready, save_torch, write_csv, write_json
from stages.layout import (
    dlsa_model_dir,
    dlsa_results,
    dlsa_resume_dir,
    resolve_device,
)
from stages.params import DLSAParams, Params
from stages.progress import log

BASES_FORMAT = "tailbank-dlsa-bases/1"
CASCADE_FILE = "cascade.pt"
BASES_FILE = "bases.pt"


def run(params: Params, method_name: str) -> Path:
    """Fit the cascade on ``banks/<method>.h5`` and compare base vs base + DLSA on test.

    Writes ``models/dlsa/<method>/`` (``cascade.pt``: filters, thresholds, cluster priors and
    classifiers; ``bases.pt``: the fitted base classifiers, for ``tailbank route``) and
    ``results/dlsa/<method>/`` (``metrics.json``, ``filters.json``, ``filters.csv``). An
    interrupted fit resumes each filter from ``checkpoints/dlsa/<method>/``.

    Returns:
        The results folder.
    """
    return on_bank_splits(
        params, method_name, "dlsa",
        lambda data, counts: _fit_and_score(params, method_name, data, counts),
    )


def _fit_and_score(
    params: Params, method_name: str, data: SplitData, counts: np.ndarray
) -> Path:
    section = params.dlsa
    config = cascade_config(section, len(counts), params.seed)
    probe = probe_config(params.classify, params.seed)
    bases = {kind: fit_on_bank(kind, data, counts, probe) for kind in section.base_kinds}
    resume = dlsa_resume_dir(method_name)
    if resume.is_dir():
        log(f"dlsa {method_name}: resuming the interrupted fit from {resume}")
    (train_x, train_y, _), (val_x, val_y, _) = data["train"], data["val"]
    try:
        cascade = fit_cascade(train_x, train_y, val_x, val_y, counts,
                              next(iter(bases.values())), config, checkpoint_dir=resume)
    except FeaturesError as error:
        raise StageError(f"dlsa {method_name}: {error}") from None
    save_model(dlsa_model_dir(method_name), cascade, bases)
    write_results(dlsa_results(method_name), method_name, cascade, bases, data, counts, params)
    shutil.rmtree(resume, ignore_errors=True)
    return dlsa_results(method_name)


def cascade_config(section: DLSAParams, num_classes: int, seed: int) -> CascadeConfig:
    """The feature library's cascade recipe from the ``dlsa`` params."""
    flow = section.flow
    device = str(resolve_device(section.device))
    flow_config = FlowTrainConfig(
        # the paper's ratio: 500 clusters for the 1000 classes of ImageNet-LT
        num_clusters=flow.num_clusters or max(2, num_classes // 2),
        **flow.model_dump(exclude={"num_clusters"}),
        seed=seed,
        device=device,
    )
    classifier = section.classifier
    return CascadeConfig(
        num_filters=section.num_filters,
        routed_share=section.routed_share,
        flow=flow_config,
        latent=section.latent,
        classifier_epochs=classifier.epochs,
        classifier_batch_size=classifier.batch_size,
        classifier_lr=classifier.lr,
        classifier_momentum=classifier.momentum,
        classifier_weight_decay=classifier.weight_decay,
        min_val_rows=classifier.min_val_rows,
        tail_max_count=section.tail_max_count,
        seed=seed,
    )


def save_model(directory: Path, cascade: Cascade, bases: dict[str, FittedClassifier]) -> None:
    """The cascade and its base classifiers, each file written atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    save_cascade(cascade, directory / CASCADE_FILE)
    save_torch(directory / BASES_FILE, {"format": BASES_FORMAT, "bases": bases})


def load_bases(path: Path) -> dict[str, FittedClassifier]:
    """The base classifiers saved beside a cascade; one line when the file is not one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise StageError(f"{path}: not found; run `tailbank dlsa` for this method") from None
    except Exception as error:
        raise StageError(f"{path}: not a readable DLSA base-classifier file "
                         f"({type(error).__name__}); re-run `tailbank dlsa`") from None
    if not isinstance(payload, dict) or payload.get("format") != BASES_FORMAT:
        raise StageError(f"{path}: not a tailbank DLSA base-classifier file "
                         f"(expected format {BASES_FORMAT}); re-run `tailbank dlsa`")
    return payload["bases"]


def write_results(
    out: Path,
    method_name: str,
    cascade: Cascade,
    bases: dict[str, FittedClassifier],
    data: SplitData,
    counts: np.ndarray,
    params: Params,
) -> None:
    """``metrics.json`` (base vs base + DLSA per kind), ``filters.json`` and ``filters.csv``."""
    options = params.eval.model_dump()  # many_above, few_below, ece_bins: evaluate's options
    test_x, test_y, test_logits = data["test"]
    val_x, val_y, val_logits = data["val"]
    # the cascade's routing does not depend on the base: walk each split down it once
    routed = {"test": cascade.route(test_x), "val": cascade.route(val_x)}
    metrics: dict[str, Any] = {}
    for kind, base in bases.items():
        plain = classifier_logits(base, test_x, test_logits)
        with_dlsa = routed["test"].combine(plain)
        val_dlsa = routed["val"].combine(classifier_logits(base, val_x, val_logits))
        scores = {name: evaluate(logits, test_y, counts, **options)
                  for name, logits in (("base", plain), ("dlsa", with_dlsa))}
        metrics[kind] = {
            "base": clean(scores["base"].summary()),
            "dlsa": clean(scores["dlsa"].summary()),
            "val_overall_dlsa": round(evaluate(val_dlsa, val_y, counts, **options).overall, 6),
        }
        log(f"dlsa {method_name} {kind}: test overall {scores['base'].overall:.4f} -> "
            f"{scores['dlsa'].overall:.4f}, few {fmt(scores['base'].few)} -> "
            f"{fmt(scores['dlsa'].few)}")
    reports = filter_report(cascade, {split: data[split][:2] for split in SPLITS}, counts)
    filters = [
        {**report.to_dict(), "flow_epoch": info.get("selected_epoch"),
         "classifier_epoch": info.get("classifier_epoch")}
        for report, info in zip(reports, cascade.info, strict=True)
    ]
    write_json(out / "metrics.json", metrics)
    write_json(out / "filters.json", json_ready(filters))
    rows = [
        (report.index + 1, _number(report.separation_accuracy.get("test")),
         _number(report.tail_share_seen.get("test")), _number(report.routed_share.get("test")))
        for report in reports
    ]
    write_csv(out / "filters.csv",
              ("filter", "separation_accuracy", "chance", "routed_share"), rows)


def _number(value: float | None) -> float | str:
    return "" if value is None or not math.isfinite(value) else float(value)
