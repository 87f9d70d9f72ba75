"""A fitted bank classifier: what val chose, its probe, and how it scores a split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from features.bank.rows import FeatureRows, as_rows
from features.classifiers.heads import Probe
from features.errors import FeaturesError

INPUT_FEATURES = "features"
INPUT_LOGITS = "logits"

# Rows scored at once: bounds the memory of scoring a split (tests shrink it to force blocks).
_EVAL_BATCH = 4096

Rows = np.ndarray | FeatureRows


@dataclass
class FittedClassifier:
    """A classifier chosen on val, ready to score any split of the bank.

    `input_field` names what `logits` takes, as the bank calls it: "features" for every
    trained kind, "logits" for `head` and `logit_adjusted`, whose decision is the backbone's
    own stored logits.
    `split_logits` scores a split of a bank (`features.bank.splits.SplitRows`) whatever
    the kind; by hand, a caller does::

        inputs = bank.features(split) if clf.input_field == "features" else bank.logits(split)
        scores = clf.logits(inputs)

    Attributes:
        kind: One of `CLASSIFIER_KINDS`.
        selected: What val chose ({"epoch": e}, {"tau": t}, ...) and the val accuracy
            it reached ({"val_accuracy": a}).
        model: The trained probe on CPU; None for `head`.
        num_classes: C.
        input_dim: Width of the input rows: D, or C for `head`.
        input_field: "features" or "logits", see above.
        shift: float32 [C] added to every row's scores (`logit_adjusted`'s -tau log pi);
            None adds nothing.
    """

    kind: str
    selected: dict[str, float]
    model: Probe | None
    num_classes: int
    input_dim: int
    input_field: str = INPUT_FEATURES
    shift: torch.Tensor | None = None

    def logits(self, features: np.ndarray | FeatureRows) -> np.ndarray:
        """Scores rows of a split.

        Args:
            features: float [N, D], the bank's features of a split (an array, or rows read
                from the bank in blocks); for kind `head`, the bank's logits [N, C].

        Returns:
            float32 [N, C].
        """
        rows = as_rows(features, f"{self.kind} classifier input", self.input_dim)
        if len(rows) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if self.model is None:
            scores = torch.cat([block.cpu() for block in rows.blocks(_EVAL_BATCH)])
        else:
            scores = predict(self.model, rows).cpu()
        if self.shift is not None:
            scores = scores + self.shift.to(scores.dtype)
        return scores.numpy()

    def split_logits(self, split: tuple[Rows, np.ndarray, Rows | None]) -> np.ndarray:
        """Scores one split of a bank (`features.bank.splits.SplitRows`): ``head`` scores
        the backbone's stored logits, every other kind the features.

        Args:
            split: (features [N, D], labels [N], stored logits [N, C] or None).

        Returns:
            float32 [N, C].

        Raises:
            FeaturesError: the kind scores stored logits and the split has none.
        """
        features, _, stored = split
        if self.input_field == INPUT_LOGITS:
            if stored is None:
                raise FeaturesError(f"classifier '{self.kind}' needs the bank's logits")
            return self.logits(stored)
        return self.logits(features)


@torch.no_grad()
def predict(probe: Probe, rows: FeatureRows) -> torch.Tensor:
    """Logits [N, C] of rows [N, D], in blocks of `_EVAL_BATCH` to bound memory."""
    probe.eval()
    device = next(probe.buffers()).device
    blocks = [probe(block.to(device)) for block in rows.blocks(_EVAL_BATCH)]
    return torch.cat(blocks).to(torch.float32)


def stored_predictions(rows: FeatureRows) -> torch.Tensor:
    """The predicted class [N] (on CPU) of stored logits [N, C], read in blocks of
    `_EVAL_BATCH`."""
    return torch.cat([block.argmax(dim=1).cpu() for block in rows.blocks(_EVAL_BATCH)])
