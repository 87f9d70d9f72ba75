"""Reading what the per-seed stages left: metrics, predictions, and which result a name means.

A result is named ``method[:classifier][+dlsa|+dlsa_paper|+dlsa_base]``:

- ``ce``: the classifier of method ce with the best val accuracy (mean over the seeds);
- ``ce:cosine``: its cosine classifier;
- ``ce+dlsa``: DLSA on top of the base kind whose base + DLSA has the best val accuracy (the
  result the dlsa stage reports as its main one);
- ``ce:cosine+dlsa``: DLSA on top of the cosine base (a kind of ``dlsa.base_kinds``);
- ``ce:cosine+dlsa_paper``: the same with every filter (the paper's cascade), not the number
  the val gate chose;
- ``ce:cosine+dlsa_base``: the cosine base as the dlsa stage fitted it (its epochs chosen on
  the half of val that chose the cascade's), the B side of the stage's DLSA differences.

Used by ``tailbank compare`` and the report; both read the files of every seed of ``seeds:``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.comparison import (
    PREDICTIONS_FILE,
    SeededPredictions,
    load_predictions,
)
from features.errors import FeaturesError
from stages.errors import StageError
from stages.layout import classify_results, dlsa_results
from stages.params import Params

SPEC = re.compile(
    r"(?P<method>[A-Za-z][A-Za-z0-9_]*)(?::(?P<kind>[A-Za-z_]+))?"
    r"(?P<dlsa>\+dlsa(?:_paper|_base)?)?"
)


BASE_SUFFIX = "+dlsa_base"


@dataclass(frozen=True)
class ResultName:
    """A parsed ``method[:classifier][+dlsa|+dlsa_paper|+dlsa_base]``; ``kind`` None means
    "chosen on val"; ``suffix`` is "", "+dlsa", "+dlsa_paper" or "+dlsa_base"."""

    method: str
    kind: str | None
    suffix: str = ""

    @property
    def dlsa(self) -> bool:
        return bool(self.suffix)

    def label(self, kind: str) -> str:
        return f"{self.method}:{kind}{self.suffix}"


def parse_name(text: str, params: Params) -> ResultName:
    """Parse and check a result name against params.

    Raises:
        StageError: one line saying what is wrong and the form to use.
    """
    found = SPEC.fullmatch(text)
    if found is None:
        raise StageError(f"'{text}': name a result as "
                         "method[:classifier][+dlsa|+dlsa_paper|+dlsa_base], "
                         "e.g. ce, ce:cosine, ce+dlsa or ce:cosine+dlsa_paper")
    name = ResultName(found["method"], found["kind"], found["dlsa"] or "")
    params.method(name.method)
    kinds = params.dlsa.base_kinds if name.dlsa else params.classify.kinds
    if name.kind is not None and name.kind not in kinds:
        where = "dlsa.base_kinds" if name.dlsa else "classify.kinds"
        raise StageError(f"'{text}': '{name.kind}' is not in {where} ({', '.join(kinds)})")
    return name


def read_json(path: Path, made_by: str) -> Any:
    """A stage's JSON output.

    Raises:
        StageError: missing, or not valid JSON (naming the command that writes it).
    """
    if not path.is_file():
        raise StageError(f"{path}: not found; run `{made_by}` (or `dvc repro`) first")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise StageError(f"{path}: not valid JSON; re-run `{made_by}`") from None


def chosen_kind(name: ResultName, params: Params) -> str:
    """The classifier kind a name means: its own, or the one with the best mean val accuracy
    over the seeds (the first listed on a tie)."""
    if name.kind is not None:
        return name.kind
    return best_on_val(name, params.dlsa.base_kinds if name.dlsa else params.classify.kinds,
                       params)


def best_on_val(name: ResultName, kinds: Sequence[str], params: Params) -> str:
    """Of ``kinds``, the one whose result (``name`` with that kind) has the best mean val
    accuracy over the seeds (the first listed on a tie)."""
    kinds = list(kinds)
    scores = {kind: [] for kind in kinds}
    for seed in params.seeds:
        if name.dlsa:
            folder, made_by, key = dlsa_results(name.method, seed), "dlsa", "val_overall_dlsa"
        else:
            folder, made_by, key = classify_results(name.method, seed), "classify", "val_overall"
        metrics = read_json(folder / "metrics.json",
                            f"tailbank {made_by} --method {name.method} --seed {seed}")
        for kind in kinds:
            value = (metrics.get(kind) or {}).get(key) if isinstance(metrics, dict) else None
            scores[kind].append(value if isinstance(value, int | float) else math.nan)
    means = {kind: float(np.nanmean(values)) if not np.all(np.isnan(values)) else -math.inf
             for kind, values in scores.items()}
    return max(kinds, key=lambda kind: (means[kind], -kinds.index(kind)))


def predictions_of(name: ResultName, params: Params) -> tuple[SeededPredictions, np.ndarray]:
    """Test predictions of every seed for a name, and the bank's class counts.

    Raises:
        StageError: a missing or foreign predictions file, or seeds tested on other rows.
    """
    kind = chosen_kind(name, params)
    per_seed, counts = [], None
    for seed in params.seeds:
        folder = (dlsa_results if name.dlsa else classify_results)(name.method, seed)
        key = kind if name.suffix == BASE_SUFFIX else f"{kind}{name.suffix}"
        try:
            per_seed.append(load_predictions(folder / PREDICTIONS_FILE, key))
            counts = _class_counts(folder / PREDICTIONS_FILE)
        except FeaturesError as error:
            raise StageError(str(error)) from None
    try:
        return SeededPredictions.from_seeds(name.label(kind), params.seeds, per_seed), counts
    except FeaturesError as error:
        raise StageError(str(error)) from None


def _class_counts(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        return np.asarray(archive["class_counts"])
