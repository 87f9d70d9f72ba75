"""A fitted DLSA model: the cascade, the classifiers of what it leaves, and the val gate.

For a base kind k and a number of filters n, "k + DLSA with n filters" classifies the rows the
first n filters route with their cluster-aided classifiers and every other row with the
remainder classifier of n: with ``dlsa.remainder: refit`` (the paper and the official code), a
classifier of kind k fitted on the training rows those n filters leave; with ``base``, the k
classifier of the whole bank. n = 0 is the base itself. The paper's cascade uses every filter;
the gate (`gates`) is the n chosen on val rows no epoch was chosen on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.bank import BankMeta
from features.bank.rows import FeatureRows
from features.classifiers import INPUT_LOGITS, FittedClassifier
from features.dlsa.cascade import Cascade, Walk
from features.errors import FeaturesError


@dataclass(frozen=True)
class BankProvenance:
    """Which backbone's bank a DLSA model was fitted on (from the bank's attributes).

    A bank of the same backbone checkpoint (for example of new images) may be routed; a bank
    of another checkpoint has other features, even with the same width and classes.
    """

    method: str
    backbone: str
    dataset: str
    checkpoint_sha256: str

    @classmethod
    def of(cls, meta: BankMeta) -> BankProvenance:
        return cls(meta.method, meta.backbone, meta.dataset, meta.checkpoint_sha256)

    def describe(self) -> str:
        return (
            f"method {self.method}, backbone {self.backbone}, checkpoint "
            f"{self.checkpoint_sha256[:12]}"
        )


@dataclass
class DLSAModel:
    """Everything `tailbank route` needs to score a bank without refitting.

    Attributes:
        cascade: The flow filters, thresholds, cluster priors and cluster-aided classifiers.
        bases: Base kind -> its classifier of the whole bank (the remainder of 0 filters).
        remainders: Base kind -> the remainder classifiers after 1, 2, ..., F filters (refit
            on the rows those filters leave); empty for a kind whose remainder is its base
            (``dlsa.remainder: base``, or the backbone's own head, which has nothing to fit).
        gates: Base kind -> the number of filters chosen on the gate rows of val.
        bank: Provenance of the bank the model was fitted on.
    """

    cascade: Cascade
    bases: dict[str, FittedClassifier]
    remainders: dict[str, list[FittedClassifier]]
    gates: dict[str, int]
    bank: BankProvenance

    @property
    def num_filters(self) -> int:
        return len(self.cascade.filters)

    def remainder(self, kind: str, filters: int) -> FittedClassifier:
        """The classifier of the rows the first ``filters`` filters leave, for base ``kind``."""
        if kind not in self.bases:
            raise FeaturesError(f"no base classifier '{kind}'; fitted: {', '.join(self.bases)}")
        refits = self.remainders.get(kind) or []
        return self.bases[kind] if filters == 0 or not refits else refits[filters - 1]

    def logits(
        self,
        kind: str,
        features: np.ndarray | FeatureRows,
        bank_logits: np.ndarray | FeatureRows | None,
        filters: int,
        walk: Walk | None = None,
    ) -> np.ndarray:
        """Logits float32 [N, C] of "kind + DLSA with ``filters`` filters" for rows.

        Args:
            kind: A base kind.
            features: float [N, D], the rows (array or bank rows).
            bank_logits: float [N, C], the bank's stored logits of the rows (for kind head).
            filters: 0 .. F.
            walk: The rows' walk down the cascade, when already computed (`Cascade.walk`).
        """
        remainder = self.remainder(kind, filters)
        inputs = bank_logits if remainder.input_field == INPUT_LOGITS else features
        if inputs is None:
            raise FeaturesError(f"classifier '{kind}' needs the bank's logits")
        rest = remainder.logits(inputs)
        if filters == 0:
            return rest.astype(np.float32)
        walk = walk if walk is not None else self.cascade.walk(features)
        return walk.truncated(filters).combine(rest)

    def check_bank(self, meta: BankMeta, where: str) -> None:
        """Refuse a bank of another width, class count or backbone checkpoint, in one line.

        Args:
            meta: The bank's attributes.
            where: Names the bank (its path) in the message.
        """
        self.cascade.check_bank(meta.feature_dim, meta.num_classes, where)
        theirs = BankProvenance.of(meta)
        if theirs.checkpoint_sha256 != self.bank.checkpoint_sha256:
            raise FeaturesError(
                f"{where}: dumped from another backbone ({theirs.describe()}) than the bank the "
                f"DLSA model was fitted on ({self.bank.describe()}); route a bank of that "
                "backbone, or fit DLSA on this one with `tailbank dlsa`"
            )
