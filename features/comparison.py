"""Two classifiers compared on the same test rows, over every seed they were trained with.

A classifier's test predictions of S seeds (`SeededPredictions`) are aligned by bank index; a
row's correctness is pooled as its mean over the seeds. `compare` gives, overall and per shot
group: both accuracies, the paired bootstrap of their difference over the rows (stratified by
class, `features.uncertainty`), McNemar's test per seed, and with two or more seeds the t
interval of the per-seed differences.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from features.errors import FeaturesError
from features.metrics import SHOT_GROUPS, shot_groups
from features.uncertainty import (
    RESAMPLES,
    Interval,
    McNemar,
    PairedTest,
    mcnemar,
    paired_bootstrap,
    t_interval,
)

PREDICTIONS_FILE = "predictions.npz"
# the predictions of base kind k with the DLSA cascade in front are stored under "k+dlsa"
# (the filters the val gate chose) and "k+dlsa_paper" (every filter, the paper's cascade)
DLSA_SUFFIX = "+dlsa"
PAPER_SUFFIX = "_paper"


@dataclass(frozen=True)
class SeededPredictions:
    """One classifier's predicted classes on the test rows, for each seed.

    Attributes:
        name: What it is, e.g. "ce:balanced_softmax+dlsa".
        index: int64 [N], bank index of each row (sorted, the same for every seed).
        labels: int64 [N], true classes.
        predicted: int64 [S, N], predicted classes, one row per seed.
        seeds: The S seeds.
    """

    name: str
    index: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    seeds: tuple[int, ...]

    @property
    def correct(self) -> np.ndarray:
        """bool [S, N]."""
        return self.predicted == self.labels[None, :]

    def accuracy(self) -> float:
        """Accuracy pooled over rows and seeds."""
        return float(self.correct.mean()) if self.correct.size else float("nan")

    @classmethod
    def from_seeds(
        cls, name: str, seeds: Sequence[int], per_seed: Sequence[Mapping[str, np.ndarray]]
    ) -> SeededPredictions:
        """Stack per-seed {"index", "labels", "predicted"} arrays, aligned by index.

        Raises:
            FeaturesError: the seeds do not hold the same test rows.
        """
        if not per_seed:
            raise FeaturesError(f"{name}: no predictions")
        first = per_seed[0]
        order = np.argsort(first["index"], kind="stable")
        index, labels = np.asarray(first["index"])[order], np.asarray(first["labels"])[order]
        predicted = []
        for seed, arrays in zip(seeds, per_seed, strict=True):
            mine = np.argsort(arrays["index"], kind="stable")
            if not (np.array_equal(np.asarray(arrays["index"])[mine], index)
                    and np.array_equal(np.asarray(arrays["labels"])[mine], labels)):
                raise FeaturesError(f"{name}: seed {seed} was tested on other rows than seed "
                                    f"{seeds[0]}; compare runs of one split")
            predicted.append(np.asarray(arrays["predicted"])[mine])
        return cls(name, index, labels, np.stack(predicted).astype(np.int64), tuple(seeds))


def load_predictions(path: Path, key: str) -> dict[str, np.ndarray]:
    """{"index", "labels", "predicted"} of one classifier from a stage's predictions file.

    The file is an .npz of plain integer arrays, read with ``allow_pickle=False``.

    Raises:
        FeaturesError: a missing file or key, or a file that is not such an archive.
    """
    if not path.is_file():
        raise FeaturesError(f"{path}: no predictions; run the stage that writes it")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if key not in archive.files:
                held = [name for name in archive.files if name not in ("index", "labels")]
                raise FeaturesError(f"{path}: no predictions of '{key}'; it has "
                                    f"{', '.join(held)}")
            return {"index": archive["index"], "labels": archive["labels"],
                    "predicted": archive[key]}
    except (OSError, ValueError, KeyError) as error:
        raise FeaturesError(f"{path}: not a predictions archive ({type(error).__name__}); re-run "
                            "the stage that writes it") from None


@dataclass(frozen=True)
class GroupComparison:
    """A against B on the rows of one shot group.

    Attributes:
        rows: Test rows of the group.
        first: A's accuracy (pooled over seeds).
        second: B's accuracy.
        paired: Paired bootstrap of A - B over the rows (seeds pooled per row).
        mcnemar: McNemar's test per seed.
        across_seeds: t interval of the per-seed differences (None with one seed).
    """

    rows: int
    first: float
    second: float
    paired: PairedTest
    mcnemar: list[McNemar] = field(default_factory=list)
    across_seeds: Interval | None = None


def compare(
    first: SeededPredictions,
    second: SeededPredictions,
    class_counts: np.ndarray,
    many_above: int,
    few_below: int,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, GroupComparison | None]:
    """A (``first``) against B (``second``) overall and per shot group.

    Raises:
        FeaturesError: the two were not tested on the same rows.
    """
    if not (np.array_equal(first.index, second.index)
            and np.array_equal(first.labels, second.labels)):
        raise FeaturesError(f"{first.name} and {second.name} were tested on other rows; compare "
                            "classifiers of one split")
    groups = class_groups(class_counts, many_above, few_below)
    pooled = [side.correct.mean(axis=0) for side in (first, second)]
    paired = paired_bootstrap(pooled[0], pooled[1], first.labels, groups, resamples, seed)
    result: dict[str, GroupComparison | None] = {}
    for name, test in paired.items():
        if test is None:
            result[name] = None
            continue
        rows = np.ones(len(first.labels), bool) if name == "overall" else np.isin(
            first.labels, groups[name])
        a, b = first.correct[:, rows], second.correct[:, rows]
        per_seed = a.mean(axis=1) - b.mean(axis=1) if len(first.seeds) == len(second.seeds) \
            else np.array([])
        result[name] = GroupComparison(
            rows=int(rows.sum()),
            first=float(a.mean()),
            second=float(b.mean()),
            paired=test,
            mcnemar=[mcnemar(a[s], b[s]) for s in range(min(len(a), len(b)))],
            across_seeds=t_interval(per_seed) if len(per_seed) >= 2 else None,
        )
    return result


def class_groups(
    class_counts: np.ndarray, many_above: int, few_below: int
) -> dict[str, np.ndarray]:
    """Shot group -> the class ids in it (`features.metrics.shot_groups`)."""
    groups = shot_groups(np.asarray(class_counts), many_above, few_below)
    return {name: np.flatnonzero(groups == name) for name in SHOT_GROUPS}
