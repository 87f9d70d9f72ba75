"""The one DLSA model file: a fitted cascade, the base classifiers it is scored with, and the
provenance of the bank it was fitted on.

The file is read with ``torch.load(weights_only=True)``: it holds only tensors, numbers,
strings, lists and dicts, so a crafted file can fail to load but cannot run code. Everything
is rebuilt from state_dicts and plain config (`features.classifiers.classifier_payload`,
`features.dlsa.cascade_payload`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.atomic import save_torch_atomically
from features.bank import BankMeta
from features.classifiers import FittedClassifier, classifier_from_payload, classifier_payload
from features.dlsa import Cascade, cascade_from_payload, cascade_payload
from features.errors import FeaturesError

MODEL_FORMAT = "tailbank-dlsa-model/1"


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
        return (f"method {self.method}, backbone {self.backbone}, checkpoint "
                f"{self.checkpoint_sha256[:12]}")


@dataclass
class DLSAModel:
    """Everything `tailbank route` needs to score a bank without refitting.

    Attributes:
        cascade: The flow filters, thresholds, cluster priors and cluster-aided classifiers.
        bases: Base classifier kind -> the classifier of the rows the last filter leaves.
        bank: Provenance of the bank the model was fitted on.
    """

    cascade: Cascade
    bases: dict[str, FittedClassifier]
    bank: BankProvenance

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


def save_dlsa_model(model: DLSAModel, path: Path) -> None:
    """Writes a DLSA model to one torch file, atomically (same model, same bytes).

    Args:
        model: A fitted model.
        path: Destination file.
    """
    payload = {
        "format": MODEL_FORMAT,
        "bank": dataclasses.asdict(model.bank),
        "cascade": cascade_payload(model.cascade),
        "bases": {kind: classifier_payload(base) for kind, base in model.bases.items()},
    }
    save_torch_atomically(_interned(payload), Path(path))


def _interned(value: Any) -> Any:
    """A copy whose strings (keys and values) are interned.

    pickle writes an equal string once per object; interning makes equal strings one object,
    so a model loaded and saved again, or fitted after a resume, gives the same bytes as a
    fresh one.
    """
    if isinstance(value, dict):
        return {_interned(key): _interned(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_interned(item) for item in value)
    if isinstance(value, str):
        return sys.intern(value)
    return value


def load_dlsa_model(path: Path) -> DLSAModel:
    """Reads a file written by `save_dlsa_model` without unpickling any object.

    Raises:
        FeaturesError: one line when the file is missing, unreadable (a crafted pickle is
            refused here), of another format or damaged.
    """
    path = Path(path)
    if not path.is_file():
        raise FeaturesError(f"{path}: no DLSA model here; run `tailbank dlsa` for this method")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for foreign, truncated or crafted files
        raise FeaturesError(
            f"{path}: not a readable DLSA model ({type(error).__name__}); re-run `tailbank dlsa` "
            "to rewrite it (it is never unpickled beyond tensors and plain values)"
        ) from None
    if not isinstance(payload, Mapping) or payload.get("format") != MODEL_FORMAT:
        found = payload.get("format") if isinstance(payload, Mapping) else type(payload).__name__
        raise FeaturesError(
            f"{path}: has format {found!r}, expected {MODEL_FORMAT!r}; re-run `tailbank dlsa`"
        )
    try:
        bank = BankProvenance(**{key: str(value) for key, value in payload["bank"].items()})
        bases = {str(kind): classifier_from_payload(base, f"{path} (base {kind})")
                 for kind, base in payload["bases"].items()}
    except (KeyError, TypeError, AttributeError) as error:
        raise FeaturesError(f"{path}: a damaged DLSA model ({type(error).__name__}); re-run "
                            "`tailbank dlsa`") from None
    cascade = cascade_from_payload(payload["cascade"], str(path))
    return DLSAModel(cascade=cascade, bases=bases, bank=bank)
