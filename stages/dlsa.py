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

from features.bank import BankMeta
from features.classifiers import FittedClassifier
from features.comparison import DLSA_SUFFIX, PREDICTIONS_FILE
from features.configs import CascadeConfig
from features.dlsa import Cascade, filter_report, fit_cascade
from features.dlsa_model import BankProvenance, DLSAModel, save_dlsa_model
from features.errors import FeaturesError
from features.metrics import evaluate
from stages.classify import (
    SPLITS,
    SplitData,
    classifier_logits,
    clean,
    fit_on_bank,
    fmt,
    on_bank_splits,
    write_predictions,
)
from stages.configs import cascade_config, probe_config
from stages.errors import StageError
from stages.io import json_ready, write_csv, write_json
from stages.layout import (
    bank_path,
    dlsa_model_dir,
    dlsa_results,
    dlsa_resume_dir,
    resolve_device,
)
from stages.outputs import StageOutputs
from stages.params import Params
from stages.progress import log

MODEL_FILE = "model.pt"


def run(params: Params, method_name: str, seed: int) -> Path:
    """Fit the cascade on ``banks/<method>/seed<seed>.h5``; compare base vs base + DLSA on test.

    Writes ``models/dlsa/<method>/seed<seed>/model.pt`` (the cascade's filters, thresholds,
    cluster priors and classifiers, the fitted base classifiers and the bank's provenance, for
    ``tailbank route``) and ``results/dlsa/<method>/seed<seed>/`` (``metrics.json``,
    ``predictions.npz``, ``filters.json``, ``filters.csv``), swapped in together. An
    interrupted fit resumes each filter from ``checkpoints/dlsa/<method>/seed<seed>/``.

    Returns:
        The results folder.
    """
    folders = [dlsa_model_dir(method_name, seed), dlsa_results(method_name, seed)]
    with StageOutputs(folders=folders) as out:
        on_bank_splits(
            params, method_name, seed, "dlsa",
            lambda data, meta: _fit_and_score(params, method_name, seed, data, meta, out),
        )
    shutil.rmtree(dlsa_resume_dir(method_name, seed), ignore_errors=True)
    return dlsa_results(method_name, seed)


def _fit_and_score(
    params: Params,
    method_name: str,
    seed: int,
    data: SplitData,
    meta: BankMeta,
    out: StageOutputs,
) -> Path:
    counts = meta.class_counts
    section = params.dlsa
    device = str(resolve_device(section.device))
    config = cascade_config(section, len(counts), seed, device)
    _check_clusters_fit(config, len(data["train"][1]), bank_path(method_name, seed))
    probe = probe_config(params.classify, seed, str(resolve_device(params.classify.device)))
    bases = {kind: fit_on_bank(kind, data, counts, probe) for kind in section.base_kinds}
    resume = dlsa_resume_dir(method_name, seed)
    resumed = resume.is_dir() and any(resume.iterdir())
    (train_x, train_y, _), (val_x, val_y, _) = data["train"], data["val"]
    try:
        cascade = fit_cascade(train_x, train_y, val_x, val_y, counts,
                              next(iter(bases.values())), config, checkpoint_dir=resume)
    except FeaturesError as error:
        raise StageError(f"dlsa {method_name}: {error}") from None
    if resumed:
        log(f"dlsa {method_name}: resumed the interrupted fit from {resume}")
    model = DLSAModel(cascade=cascade, bases=bases, bank=BankProvenance.of(meta))
    save_dlsa_model(model, out.staged(dlsa_model_dir(method_name, seed)) / MODEL_FILE)
    results = out.staged(dlsa_results(method_name, seed))
    write_results(results, method_name, cascade, bases, data, counts, params)
    return results


def _check_clusters_fit(config: CascadeConfig, train_rows: int, bank: Path) -> None:
    """Each filter's K clusters need at least K training rows to mean anything; the last
    filter sees about N (1 - routed_share)^(filters - 1) of them."""
    reaching = int(train_rows * (1 - config.routed_share) ** (config.num_filters - 1))
    clusters = config.flow.num_clusters
    if clusters > reaching:
        raise StageError(
            f"params.yaml: dlsa.flow.num_clusters: {clusters} clusters for the ~{reaching} "
            f"training rows of {bank} that reach filter {config.num_filters}; "
            "use fewer clusters or fewer filters"
        )


def write_results(
    out: Path,
    method_name: str,
    cascade: Cascade,
    bases: dict[str, FittedClassifier],
    data: SplitData,
    counts: np.ndarray,
    params: Params,
) -> None:
    """``metrics.json`` (base vs base + DLSA per kind), ``predictions.npz`` (each base's and
    base + DLSA's predicted class of every test row), ``filters.json`` and ``filters.csv``."""
    options = params.eval.model_dump()  # many_above, few_below, ece_bins: evaluate's options
    test_x, test_y, test_logits = data["test"]
    val_x, val_y, val_logits = data["val"]
    # the cascade's routing does not depend on the base: walk each split down it once
    routed = {"test": cascade.route(test_x), "val": cascade.route(val_x)}
    metrics: dict[str, Any] = {}
    predicted: dict[str, np.ndarray] = {}
    for kind, base in bases.items():
        plain = classifier_logits(base, test_x, test_logits)
        with_dlsa = routed["test"].combine(plain)
        val_dlsa = routed["val"].combine(classifier_logits(base, val_x, val_logits))
        scores = {name: evaluate(logits, test_y, counts, **options)
                  for name, logits in (("base", plain), ("dlsa", with_dlsa))}
        predicted[kind] = plain.argmax(axis=1)
        predicted[f"{kind}{DLSA_SUFFIX}"] = with_dlsa.argmax(axis=1)
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
    write_predictions(out / PREDICTIONS_FILE, data, counts, predicted)
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
