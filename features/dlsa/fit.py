"""Fitting a DLSA model on a bank: bases, cascade, remainder classifiers and the val gate.

The val split is cut in two halves, per class and seeded: the *select* half chooses every
epoch (base classifiers, flows, cluster-aided and remainder classifiers), the *gate* half
only the number of filters n = 0 .. F each base kind uses. A cascade of n >= 1 filters is a
candidate only when, on the gate rows, it fixes significantly more of the base's errors than
it makes: a one-sided sign test (exact binomial, p = 1/2) over the rows where the two disagree,
for each of the F cascades, at family-wise level ``gate_alpha`` (Holm's step-down: F cascades
tested at alpha each would leave the base on a fluke about F times as often). Of the base
(n = 0) and the candidates, the gate keeps the one with the best gate accuracy, the smallest n
on ties. So it never picks a cascade that is worse on those
rows than the base, and it needs evidence, not a lucky handful of val rows, to leave the base:
with a few hundred val rows a gain of two or three rows is noise, and held-out accuracy would
pay for it. ``gate_alpha: 1`` keeps the best accuracy whatever the evidence.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.progress import Progress, prefixed
from features.bank.rows import FeatureRows, as_rows
from features.classifiers import (
    INPUT_LOGITS,
    FittedClassifier,
    fit_classifier,
    linear_map_of,
)
from features.configs import CascadeConfig, ProbeConfig
from features.dlsa.cascade import fit_cascade
from features.dlsa.classifier import LinearMap, head_map
from features.dlsa.model import BankProvenance, DLSAModel
from features.errors import FeaturesError


@dataclass(frozen=True)
class GateReport:
    """How the gate chose, per base kind.

    Attributes:
        rows: Val rows of the gate half.
        accuracy: Base kind -> gate accuracy of n = 0 .. F filters.
        p_values: Base kind -> the sign test's p of n = 1 .. F filters against the base (the
            chance of fixing at least as many of the base's errors as n did, among the rows
            where the two disagree, if neither were better).
        chosen: Base kind -> the n chosen.
    """

    rows: int
    accuracy: dict[str, list[float]]
    p_values: dict[str, list[float]]
    chosen: dict[str, int]


def split_val(val_y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the select and the gate half of val: per class, a seeded ``share`` of
    its rows (rounded down, at least one when the class has two) goes to the gate.

    Returns:
        (select, gate), sorted int64 positions.
    """
    rng = np.random.default_rng(seed)
    select, gate = [], []
    for label in np.unique(val_y):
        rows = rng.permutation(np.flatnonzero(val_y == label))
        cut = min(len(rows) - 1, max(1, int(share * len(rows)))) if len(rows) > 1 else 0
        gate.append(rows[:cut])
        select.append(rows[cut:])
    return (np.sort(np.concatenate(select)).astype(np.int64),
            np.sort(np.concatenate(gate)).astype(np.int64))


def fit_dlsa(
    train: tuple[np.ndarray | FeatureRows, np.ndarray, np.ndarray | FeatureRows | None],
    val: tuple[np.ndarray | FeatureRows, np.ndarray, np.ndarray | FeatureRows | None],
    class_counts: np.ndarray,
    base_kinds: tuple[str, ...],
    probe: ProbeConfig,
    config: CascadeConfig,
    provenance: BankProvenance,
    checkpoint_dir: Path | None = None,
    progress: Progress | None = None,
) -> tuple[DLSAModel, GateReport]:
    """Fits bases, cascade, remainders and gate (see the module doc).

    Args:
        train: (features [N, D], labels [N], the bank's logits [N, C] or None).
        val: (features [M, D], labels [M], logits [M, C] or None).
        class_counts: int [C], the bank's training rows per class.
        base_kinds: The base classifier kinds to score DLSA on.
        probe: The recipe of the base and remainder classifiers.
        config: The cascade's recipe.
        provenance: The bank's provenance, kept with the model.
        checkpoint_dir: Per-filter flow checkpoints (resumed when present).
        progress: Told each epoch of the bases ("base <kind>"), of every filter's flow and
            classifier ("filter f/F flow") and of the remainders ("remainder f/F <kind>").
    """
    train_x, train_y, train_logits = train
    val_x, val_y, val_logits = val
    counts = np.asarray(class_counts)
    val_rows = as_rows(val_x, "val_x")
    val_y = np.asarray(val_y)
    select, gate = split_val(val_y, config.gate_share, config.seed)
    select_val = (val_rows.subset(select), val_y[select],
                  None if val_logits is None else as_rows(val_logits, "val logits").subset(select))
    bases = {kind: _fit(kind, (train_x, train_y, train_logits), select_val, counts, probe,
                        prefixed(progress, "base"))
             for kind in base_kinds}
    initial = initial_map(config.init, train_x, train_logits, bases)
    cascade, left_train, left_select = fit_cascade(
        train_x, train_y, select_val[0], select_val[1], counts, config, initial, checkpoint_dir,
        progress)
    remainders = {}
    if config.remainder == "refit":
        train_rows = as_rows(train_x, "train_x")
        train_labels = np.asarray(train_y)
        for kind, base in bases.items():
            if base.input_field == INPUT_LOGITS:
                continue  # the backbone's own head: nothing to fit on the remainder
            remainders[kind] = [
                _fit(kind, (train_rows.subset(left_train[n]), train_labels[left_train[n]], None),
                     _nonempty(select_val, left_select[n]), counts, probe,
                     prefixed(progress, f"remainder {n}/{len(cascade.filters)}"))
                for n in range(1, len(cascade.filters) + 1)
            ]
    model = DLSAModel(cascade, bases, remainders, {}, provenance)
    report = choose_gates(model, val_rows.subset(gate), val_y[gate],
                          None if val_logits is None else as_rows(val_logits, "val").subset(gate),
                          config.gate_alpha)
    model.gates = dict(report.chosen)
    return model, report


def initial_map(
    mode: str,
    train_x: np.ndarray | FeatureRows,
    train_logits: np.ndarray | FeatureRows | None,
    bases: Mapping[str, FittedClassifier],
) -> LinearMap | None:
    """What each cluster-aided classifier's x part starts from (``dlsa.init``).

    "head": the backbone's own classifier, recovered from the bank's logits when it is linear
    in the features (the official code); otherwise, and for "base", the first base kind with
    a linear classifier; "none": a fresh random layer.
    """
    if mode == "none":
        return None
    if mode == "head" and train_logits is not None:
        found = head_map(train_x, train_logits)
        if found is not None:
            return found
    for kind, base in bases.items():
        linear = linear_map_of(base)
        if linear is not None:
            return LinearMap(*linear, source=f"base {kind}")
    return None


def choose_gates(
    model: DLSAModel,
    gate_x: FeatureRows,
    gate_y: np.ndarray,
    gate_logits: FeatureRows | None,
    alpha: float = 0.05,
) -> GateReport:
    """Per base kind, the number of filters the gate keeps (see the module doc).

    Args:
        model: The fitted model (its bases, cascade and remainders).
        gate_x: [M, D] the gate rows of val.
        gate_y: int [M] their labels.
        gate_logits: [M, C] their bank logits, or None.
        alpha: Family-wise level of the one-sided sign tests (Holm) a cascade must pass to
            be a candidate.
    """
    walk = model.cascade.walk(gate_x)
    accuracy, p_values, chosen = {}, {}, {}
    for kind in model.bases:
        correct = [model.logits(kind, gate_x, gate_logits, filters, walk).argmax(axis=1)
                   == gate_y for filters in range(model.num_filters + 1)]
        if not len(gate_y):  # no val rows to judge on: the paper's cascade
            accuracy[kind], p_values[kind] = [float("nan")] * len(correct), []
            chosen[kind] = model.num_filters
            continue
        scores = [float(right.mean()) for right in correct]
        p_values[kind] = [sign_test(right, correct[0]) for right in correct[1:]]
        # alpha 1: no test, the best gate accuracy (the gate before the sign test)
        passed = range(len(p_values[kind])) if alpha >= 1 else holm_rejected(p_values[kind], alpha)
        candidates = [0] + [n + 1 for n in passed]
        accuracy[kind] = scores
        chosen[kind] = max(candidates, key=lambda n: (scores[n], -n))
    return GateReport(len(gate_y), accuracy, p_values, chosen)


def holm_rejected(p_values: list[float], alpha: float) -> list[int]:
    """Positions of the hypotheses Holm's step-down procedure rejects at family-wise level
    ``alpha``: the k-th smallest p (k = 0, 1, ...) is rejected while p < alpha / (m - k)."""
    rejected = []
    for rank, index in enumerate(sorted(range(len(p_values)), key=lambda i: p_values[i])):
        if p_values[index] >= alpha / (len(p_values) - rank):
            break
        rejected.append(index)
    return sorted(rejected)


def sign_test(right: np.ndarray, base_right: np.ndarray) -> float:
    """One-sided exact sign test that ``right`` beats ``base_right`` on the same rows.

    Of the m rows where exactly one of the two is right, k are the rows only ``right`` gets;
    p = P(X >= k) for X ~ Binomial(m, 1/2) (1 when m = 0): McNemar's exact test, one-sided.

    Args:
        right: bool [M], rows the candidate classifies correctly.
        base_right: bool [M], rows the base classifies correctly.
    """
    from scipy.stats import binomtest

    fixed = int(np.sum(right & ~base_right))
    disagree = fixed + int(np.sum(~right & base_right))
    if disagree == 0:
        return 1.0
    return float(binomtest(fixed, disagree, 0.5, alternative="greater").pvalue)


def _fit(
    kind: str,
    train: tuple[np.ndarray | FeatureRows, np.ndarray, np.ndarray | FeatureRows | None],
    val: tuple[FeatureRows, np.ndarray, FeatureRows | None],
    counts: np.ndarray,
    probe: ProbeConfig,
    progress: Progress | None = None,
) -> FittedClassifier:
    """One classifier kind, its epoch chosen on ``val``; the bank's class counts are its
    prior and sampling weights (the official code's remainder uses them too)."""
    (train_x, train_y, train_logits), (val_x, val_y, val_logits) = train, val
    head = (train_logits, val_logits) if train_logits is not None and val_logits is not None \
        else None
    try:
        return fit_classifier(kind, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                              class_counts=counts, config=probe, head_logits=head,
                              progress=progress)
    except FeaturesError as error:
        raise FeaturesError(f"DLSA {kind} classifier: {error}") from None


def _nonempty(
    val: tuple[FeatureRows, np.ndarray, FeatureRows | None], positions: np.ndarray
) -> tuple[FeatureRows, np.ndarray, FeatureRows | None]:
    """The val rows at ``positions``; all of them when none is left (an epoch must be chosen
    on something)."""
    if len(positions) == 0:
        return val
    x, y, logits = val
    return x.subset(positions), y[positions], None if logits is None else logits.subset(positions)
