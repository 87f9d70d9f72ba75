"""Stage ``classify@<method>``: decoupled classifiers on a bank, evaluated per shot group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.progress import Progress
from features.bank import Bank
from features.bank.splits import BankSplits
from features.comparison import PREDICTIONS_FILE
from features.configs import ProbeConfig
from features.errors import FeaturesError
from features.metrics import Evaluation, evaluate
from stages.configs import probe_config
from stages.errors import StageError
from stages.io import fmt, json_ready, write_csv, write_json, write_predictions
from stages.layout import (
    check_bank_origin,
    classify_results,
    require_stage2_bank,
    resolve_device,
)
from stages.outputs import StageOutputs
from stages.params import EvalParams, Params
from stages.progress import StepProgress, log


def run(params: Params, method_name: str, seed: int) -> Path:
    """Train each classifier kind of ``classify.kinds`` on ``banks/<method>/seed<seed>.h5``.

    Epochs and τ are chosen on the balanced val split; the test split is only evaluated.
    Writes, in ``results/classify/<method>/seed<seed>/``: ``metrics.json`` (one entry per
    kind: overall / many / medium / few accuracy, MCC, NMI, ECE on test, plus val accuracy and
    what val selected), ``predictions.npz`` (every kind's predicted class of each test row,
    for paired comparisons) and ``per_class/<kind>.csv`` (per-class test accuracy against
    training count).

    Returns:
        The results folder.
    """
    results = classify_results(method_name, seed)
    with StageOutputs(folders=[results]) as out:
        # rows over memory.budget_mb stay in the open bank and are read on demand
        with Bank.open(require_stage2_bank(params, method_name, seed)) as bank:
            check_bank_origin(params, method_name, bank.meta.source_kind)
            splits = BankSplits.read(bank, params.memory.budget_bytes, log,
                                     f"classify {method_name}")
            _classify(params, method_name, seed, splits, bank.meta.class_counts,
                      out.staged(results))
    return results


def _classify(
    params: Params, method_name: str, seed: int, splits: BankSplits, counts: np.ndarray,
    out: Path,
) -> Path:
    config = probe_config(params.classify, seed, str(resolve_device(params.classify.device)))
    metrics: dict[str, Any] = {}
    per_class: dict[str, np.ndarray] = {}
    predicted: dict[str, np.ndarray] = {}
    kinds = params.classify.kinds
    with StepProgress(f"classify {method_name}", len(kinds), "epochs") as progress:
        for kind in kinds:
            try:
                test, val_acc, selected, predicted[kind] = fit_and_evaluate(
                    kind, splits, counts, config, params.eval, progress.report)
            except FeaturesError as error:
                raise StageError(f"classify {method_name}: {error}") from None
            metrics[kind] = {**json_ready(test.summary()), "val_overall": round(val_acc, 6),
                             **{f"selected_{key}": value for key, value in selected.items()}}
            per_class[kind] = test.per_class
            progress.epoch_line(
                f"classify {method_name} seed {seed} {kind}: test overall {test.overall:.4f} "
                f"many {fmt(test.many)} medium {fmt(test.medium)} few {fmt(test.few)} "
                f"(val {val_acc:.4f})")
    write_json(out / "metrics.json", metrics)
    write_predictions(out / PREDICTIONS_FILE, splits.test_index, splits["test"].labels, counts,
                      predicted)
    for kind, accuracy in per_class.items():
        rows = [(c, int(counts[c]), float(accuracy[c])) for c in np.argsort(-counts, kind="stable")]
        write_csv(out / "per_class" / f"{kind}.csv", ("class", "train_count", "accuracy"), rows)
    return out


def fit_and_evaluate(
    kind: str,
    splits: BankSplits,
    counts: np.ndarray,
    config: ProbeConfig,
    eval_params: EvalParams,
    progress: Progress | None = None,
) -> tuple[Evaluation, float, dict[str, float], np.ndarray]:
    """Fit one classifier kind on train (selected on val), evaluate it on val and test;
    ``progress`` is told each training epoch.

    Returns:
        The test evaluation, the val accuracy, what val selected (epoch, τ, ...) and the
        predicted class of each test row (int64 [N]).
    """
    # a kind that scores stored logits on a bank without them: the library says which, and
    # how to fix it (`features.classifiers.estimators.checked_head_logits`)
    fitted = splits.fit(kind, counts, config, progress)
    options = eval_params.model_dump()  # many_above, few_below, ece_bins: evaluate's options
    scores, logits = {}, {}
    for split in ("val", "test"):
        logits[split] = fitted.split_logits(splits[split])
        scores[split] = evaluate(logits[split], splits[split].labels, counts, **options)
    # val accuracy is reported as val_overall; the rest is what val chose (epoch, tau)
    selected = {key: value for key, value in fitted.selected.items() if key != "val_accuracy"}
    return scores["test"], scores["val"].overall, selected, logits["test"].argmax(axis=1)
