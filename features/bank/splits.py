"""A bank's splits as one value: the rows every stage-2 consumer fits on and scores.

`BankSplits.read` gathers each split's features, labels and (optional) stored logits, in
memory when they fit a byte budget and otherwise as rows read from the open bank in windows
(`features.bank.rows`): the results are the same either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from core.progress import Progress
from core.splits import SPLITS
from features.bank import Bank
from features.bank.rows import BankRows, FeatureRows, dataset_bytes, load_rows
from features.classifiers import FittedClassifier, fit_classifier
from features.configs import ProbeConfig

Rows = np.ndarray | FeatureRows


class SplitRows(NamedTuple):
    """One split of a bank; a tuple, so ``features, labels, logits = rows`` unpacks it.

    Attributes:
        features: float32 [N, D], in memory or read from the bank on demand.
        labels: int64 [N].
        logits: float32 [N, C], the backbone's own head, or None when the bank has none.
    """

    features: Rows
    labels: np.ndarray
    logits: Rows | None


@dataclass(frozen=True)
class BankSplits(Mapping[str, SplitRows]):
    """Every split of a bank (``splits["train"]``), and where its test rows come from.

    Attributes:
        rows: split -> its `SplitRows`, for each of `core.splits.SPLITS`.
        test_index: int64 [N_test], each test row's position in the dataset's test split
            (the bank's provenance, written beside predictions for paired comparisons).
    """

    rows: dict[str, SplitRows]
    test_index: np.ndarray

    def __getitem__(self, split: str) -> SplitRows:
        return self.rows[split]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def read(
        cls,
        bank: Bank,
        budget_bytes: int | None,
        note: Callable[[str], None] | None = None,
        who: str = "",
    ) -> BankSplits:
        """Features, labels and stored logits of every split, in memory when they fit
        ``budget_bytes``, otherwise read from the bank in windows (same results).

        The bank must stay open while the returned rows are used.

        Args:
            bank: an open bank.
            budget_bytes: the most bytes of rows to hold in memory; None: no limit.
            note: told, in one line, when the rows are streamed rather than loaded.
            who: names the caller in that line ("classify ce").
        """
        keys = [(split, field) for split in SPLITS for field in ("features", "logits")
                if bank.has(split, field)]
        rows = load_rows(bank, keys, budget_bytes)
        streamed = rows["train", "features"]
        if isinstance(streamed, BankRows) and note is not None:
            needed = dataset_bytes(bank, keys)
            note(f"{who}: the bank's rows take {needed / 2**20:.3g} MiB, over memory.budget_mb "
                 f"{(budget_bytes or 0) / 2**20:.3g}; reading them from {bank.path} in windows "
                 f"of {streamed.window_rows} rows")
        by_split = {split: SplitRows(rows[split, "features"], bank.labels(split),
                                     rows.get((split, "logits")))
                    for split in SPLITS}
        return cls(by_split, bank.index("test"))

    def fit(
        self,
        kind: str,
        class_counts: np.ndarray,
        config: ProbeConfig,
        progress: Progress | None = None,
    ) -> FittedClassifier:
        """One classifier kind on the train rows, its epoch or τ chosen on the val rows.

        Args:
            kind: one of `features.configs.CLASSIFIER_KINDS`; ``head`` needs stored logits.
            class_counts: int [C], the bank's training rows per class.
            config: the classifier's hyper-parameters.
            progress: told ``(kind, epoch, epochs)`` after each training epoch.
        """
        (train_x, train_y, train_logits), (val_x, val_y, val_logits) = self["train"], self["val"]
        return fit_classifier(
            kind, train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
            class_counts=class_counts, config=config,
            head_logits=(train_logits, val_logits) if train_logits is not None else None,
            progress=progress,
        )
