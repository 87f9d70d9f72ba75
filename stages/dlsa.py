"""Stage ``dlsa-<method>@<seed>``: a DLSA model on a bank, scored against its base classifiers.

One cascade is fitted per bank (`features.dlsa.fit`); each kind of ``dlsa.base_kinds`` gets its
remainder classifiers and its val gate. The metrics put, per base kind, "base", "base + DLSA" as
the gate chose it (the main result, safe to use) and "base + DLSA" with every filter (the
paper's cascade, on which the paper's claim is judged) side by side. Every epoch and the gate
are chosen on val (two disjoint halves); the test split is only scored.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from features.bank import Bank, BankMeta
from features.bank.splits import BankSplits
from features.comparison import DLSA_SUFFIX, PAPER_SUFFIX, PREDICTIONS_FILE
from features.configs import CascadeConfig
from features.dlsa.fit import GateReport, fit_dlsa
from features.dlsa.io import save_dlsa_model
from features.dlsa.model import BankProvenance, DLSAModel
from features.dlsa.report import filter_report
from features.errors import FeaturesError
from features.metrics import evaluate
from stages.configs import cascade_config, probe_config
from stages.errors import StageError
from stages.io import fmt, json_ready, write_csv, write_json, write_predictions
from stages.layout import (
    DLSA_MODEL_FILE,
    bank_path,
    check_bank_origin,
    dlsa_model_dir,
    dlsa_results,
    dlsa_resume_dir,
    require_stage2_bank,
    resolve_device,
)
from stages.outputs import StageOutputs
from stages.params import Params
from stages.progress import StepProgress, log


def run(params: Params, method_name: str, seed: int) -> Path:
    """Fit DLSA on ``banks/<method>/seed<seed>.h5``; compare base and base + DLSA on test.

    Writes ``models/dlsa/<method>/seed<seed>/model.pt`` (cascade, base and remainder
    classifiers, gate, bank provenance, for ``tailbank route``) and
    ``results/dlsa/<method>/seed<seed>/`` (``metrics.json``, ``predictions.npz``,
    ``filters.json``, ``filters.csv``), swapped in together. An interrupted fit resumes each
    filter from ``checkpoints/dlsa/<method>/seed<seed>/``.

    Returns:
        The results folder.
    """
    folders = [dlsa_model_dir(method_name, seed), dlsa_results(method_name, seed)]
    with StageOutputs(folders=folders) as out:
        # rows over memory.budget_mb stay in the open bank and are read on demand
        with Bank.open(require_stage2_bank(params, method_name, seed)) as bank:
            check_bank_origin(params, method_name, bank.meta.source_kind)
            splits = BankSplits.read(bank, params.memory.budget_bytes, log, f"dlsa {method_name}")
            _fit_and_score(params, method_name, seed, splits, bank.meta, out)
    shutil.rmtree(dlsa_resume_dir(method_name, seed), ignore_errors=True)
    return dlsa_results(method_name, seed)


def _fit_and_score(
    params: Params,
    method_name: str,
    seed: int,
    data: BankSplits,
    meta: BankMeta,
    out: StageOutputs,
) -> Path:
    counts = meta.class_counts
    section = params.dlsa
    config = cascade_config(section, len(counts), seed, str(resolve_device(section.device)))
    _check_clusters_fit(config, len(data["train"].labels), bank_path(method_name, seed))
    probe = probe_config(params.classify, seed, str(resolve_device(params.classify.device)))
    resume = dlsa_resume_dir(method_name, seed)
    resumed = resume.is_dir() and any(resume.iterdir())
    try:
        # report() sets each piece's own total (a base's, a filter's flow's epochs)
        with StepProgress(f"dlsa {method_name}", 1, "epochs") as progress:
            model, gates = fit_dlsa(data["train"], data["val"], counts, section.base_kinds,
                                    probe, config, BankProvenance.of(meta),
                                    checkpoint_dir=resume, progress=progress.report)
    except FeaturesError as error:
        raise StageError(f"dlsa {method_name}: {error}") from None
    if resumed:
        log(f"dlsa {method_name}: resumed the interrupted fit from {resume}")
    save_dlsa_model(model, out.staged(dlsa_model_dir(method_name, seed)) / DLSA_MODEL_FILE)
    results = out.staged(dlsa_results(method_name, seed))
    write_results(results, method_name, model, gates, data, counts, params)
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
    model: DLSAModel,
    gates: GateReport,
    data: BankSplits,
    counts: np.ndarray,
    params: Params,
) -> None:
    """``metrics.json`` (per base kind: base, gated and paper DLSA on test, the gate),
    ``predictions.npz`` (each base's, gated and paper predicted class of every test row),
    ``filters.json`` and ``filters.csv``."""
    options = params.eval.model_dump()  # many_above, few_below, ece_bins: evaluate's options
    test_x, test_y, test_logits = data["test"]
    walk = model.cascade.walk(test_x)  # the same for every base: walk the test rows once
    metrics: dict[str, Any] = {}
    predicted: dict[str, np.ndarray] = {}
    for kind in model.bases:
        chosen = model.gates[kind]
        variants = {"base": 0, "dlsa": chosen, "dlsa_paper": model.num_filters}
        scores = {}
        for name, filters in variants.items():
            logits = model.logits(kind, test_x, test_logits, filters, walk)
            scores[name] = evaluate(logits, test_y, counts, **options)
            key = {"base": kind, "dlsa": f"{kind}{DLSA_SUFFIX}",
                   "dlsa_paper": f"{kind}{DLSA_SUFFIX}{PAPER_SUFFIX}"}[name]
            predicted[key] = logits.argmax(axis=1)
        metrics[kind] = {
            **{name: json_ready(score.summary()) for name, score in scores.items()},
            "filters": chosen,
            "gate_accuracy": [round(value, 6) for value in gates.accuracy[kind]],
            "gate_p": [round(value, 6) for value in gates.p_values[kind]],
            "val_overall_dlsa": round(gates.accuracy[kind][chosen], 6),
        }
        log(f"dlsa {method_name} {kind}: test overall {scores['base'].overall:.4f} -> "
            f"{scores['dlsa'].overall:.4f} ({chosen} filters chosen on val; all "
            f"{model.num_filters}: {scores['dlsa_paper'].overall:.4f}), few "
            f"{fmt(scores['base'].few)} -> {fmt(scores['dlsa'].few)}")
    reports = filter_report(model, dict(data), counts)
    filters = [
        {**report.to_dict(), "flow_epoch": info.get("selected_epoch"),
         "classifier_epoch": info.get("classifier_epoch"), "init": info.get("init")}
        for report, info in zip(reports, model.cascade.info, strict=True)
    ]
    write_json(out / "metrics.json", metrics)
    write_predictions(out / PREDICTIONS_FILE, data.test_index, data["test"].labels, counts,
                      predicted)
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
