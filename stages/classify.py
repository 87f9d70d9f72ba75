"""Stage ``classify@<method>``: decoupled classifiers on a bank, evaluated per shot group."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from features.bank import SPLITS, Bank, BankMeta
from features.bank.rows import BankRows, FeatureRows, dataset_bytes, load_rows
from features.classifiers import FittedClassifier, fit_classifier
from features.comparison import PREDICTIONS_FILE
from features.configs import ProbeConfig
from features.errors import FeaturesError
from features.metrics import Evaluation, evaluate
from stages.configs import probe_config
from stages.errors import StageError
from stages.io import json_ready, write_csv, write_json, write_npz
from stages.layout import bank_path, classify_results, require_file, resolve_device
from stages.outputs import StageOutputs
from stages.params import EvalParams, Params
from stages.progress import log

# split -> (features [N, D], labels [N], the backbone's logits [N, C] or None); also
# "test_index" -> the bank index [N] of the test rows
SplitData = dict[str, Any]


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
        on_bank_splits(
            params, method_name, seed, "classify",
            lambda data, meta: _classify(params, method_name, seed, data, meta.class_counts,
                                         out.staged(results)),
        )
    return results


def on_bank_splits(
    params: Params,
    method_name: str,
    seed: int,
    stage: str,
    work: Callable[[SplitData, BankMeta], Path],
) -> Path:
    """Runs ``work(splits, bank_meta)`` on ``banks/<method>/seed<seed>.h5``, kept open
    meanwhile (rows over ``memory.budget_mb`` are read from it on demand). The splits carry
    the bank's test index as ``data["test_index"]``."""
    params.method(method_name)
    path = require_file(bank_path(method_name, seed),
                        f"tailbank dump --method {method_name} --seed {seed}")
    with Bank.open(path) as bank:
        data = load_splits(bank, params.memory.budget_bytes, f"{stage} {method_name}")
        data["test_index"] = bank.index("test")
        return work(data, bank.meta)


def _classify(
    params: Params, method_name: str, seed: int, data: SplitData, counts: np.ndarray, out: Path
) -> Path:
    config = probe_config(params.classify, seed, str(resolve_device(params.classify.device)))
    metrics: dict[str, Any] = {}
    per_class: dict[str, np.ndarray] = {}
    predicted: dict[str, np.ndarray] = {}
    for kind in params.classify.kinds:
        try:
            test, val_acc, selected, predicted[kind] = fit_and_evaluate(
                kind, data, counts, config, params.eval)
        except FeaturesError as error:
            raise StageError(f"classify {method_name}: {error}") from None
        metrics[kind] = {**clean(test.summary()), "val_overall": round(val_acc, 6),
                         **{f"selected_{key}": value for key, value in selected.items()}}
        per_class[kind] = test.per_class
        log(f"classify {method_name} seed {seed} {kind}: test overall {test.overall:.4f} many "
            f"{fmt(test.many)} medium {fmt(test.medium)} few {fmt(test.few)} (val {val_acc:.4f})")
    write_json(out / "metrics.json", metrics)
    write_predictions(out / PREDICTIONS_FILE, data, counts, predicted)
    for kind, accuracy in per_class.items():
        rows = [(c, int(counts[c]), float(accuracy[c])) for c in np.argsort(-counts, kind="stable")]
        write_csv(out / "per_class" / f"{kind}.csv", ("class", "train_count", "accuracy"), rows)
    return out


def load_splits(bank: Bank, budget_bytes: int | None, who: str) -> SplitData:
    """Features, labels and stored logits of every split, in memory when they fit
    ``memory.budget_mb``, otherwise read from the bank in windows (same results).

    The bank must stay open while the returned rows are used.
    """
    keys = [(split, field) for split in SPLITS for field in ("features", "logits")
            if bank.has(split, field)]
    rows = load_rows(bank, keys, budget_bytes)
    streamed = rows["train", "features"]
    if isinstance(streamed, BankRows):
        needed = dataset_bytes(bank, keys)
        log(f"{who}: the bank's rows take {needed / 2**20:.3g} MiB, over memory.budget_mb "
            f"{(budget_bytes or 0) / 2**20:.3g}; reading them from {bank.path} in windows of "
            f"{streamed.window_rows} rows")
    return {split: (rows[split, "features"], bank.labels(split), rows.get((split, "logits")))
            for split in SPLITS}


def fit_and_evaluate(
    kind: str,
    data: SplitData,
    counts: np.ndarray,
    config: ProbeConfig,
    eval_params: EvalParams,
) -> tuple[Evaluation, float, dict[str, float], np.ndarray]:
    """Fit one classifier kind on train (selected on val), evaluate it on val and test.

    Returns:
        The test evaluation, the val accuracy, what val selected (epoch, τ, ...) and the
        predicted class of each test row (int64 [N]).
    """
    fitted = fit_on_bank(kind, data, counts, config)
    options = eval_params.model_dump()  # many_above, few_below, ece_bins: evaluate's options
    scores, logits = {}, {}
    for split in ("val", "test"):
        features, labels, bank_logits = data[split]
        logits[split] = classifier_logits(fitted, features, bank_logits)
        scores[split] = evaluate(logits[split], labels, counts, **options)
    # val accuracy is reported as val_overall; the rest is what val chose (epoch, tau)
    selected = {key: value for key, value in fitted.selected.items() if key != "val_accuracy"}
    return scores["test"], scores["val"].overall, selected, logits["test"].argmax(axis=1)


def fit_on_bank(
    kind: str,
    data: SplitData,
    counts: np.ndarray,
    config: ProbeConfig,
) -> FittedClassifier:
    """One classifier kind on a bank's train rows, its epoch or τ chosen on the val rows."""
    (train_x, train_y, train_logits), (val_x, val_y, val_logits) = data["train"], data["val"]
    if kind == "head" and train_logits is None:
        raise StageError("classifier kind 'head' needs the bank's logits, which this bank "
                         "lacks; drop 'head' from the classifier kinds")
    return fit_classifier(
        kind, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y, class_counts=counts,
        config=config,
        head_logits=(train_logits, val_logits) if train_logits is not None else None,
    )


def classifier_logits(
    fitted: FittedClassifier,
    features: np.ndarray | FeatureRows,
    bank_logits: np.ndarray | FeatureRows | None,
) -> np.ndarray:
    """A fitted classifier's logits of a split: ``head`` scores the backbone's own logits,
    every other kind the features."""
    if fitted.input_field == "logits":
        if bank_logits is None:
            raise StageError(f"classifier '{fitted.kind}' needs the bank's logits")
        return fitted.logits(bank_logits)
    return fitted.logits(features)


def write_predictions(
    target: Path, data: SplitData, counts: np.ndarray, predicted: dict[str, np.ndarray]
) -> None:
    """``predictions.npz``: the test rows' bank index, labels, the bank's class counts, and one
    int64 [N] array of predicted classes per key; plain arrays, read with allow_pickle=False."""
    write_npz(target, {"index": np.asarray(data["test_index"], np.int64),
                       "labels": np.asarray(data["test"][1], np.int64),
                       "class_counts": np.asarray(counts, np.int64),
                       **{key: np.asarray(value, np.int64) for key, value in predicted.items()}})


def clean(summary: dict[str, float | None]) -> dict[str, float | None]:
    """Round for stable, readable metrics files; NaN (empty group) becomes null."""
    return json_ready(summary)


def fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"
