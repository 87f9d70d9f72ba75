"""The one DLSA model file: the cascade, the base and remainder classifiers, the val gate and
the provenance of the bank it was fitted on.

The file is read with ``torch.load(weights_only=True)``: it holds only tensors, numbers,
strings, lists and dicts, so a crafted file can fail to load but cannot run code. Everything
is rebuilt from state_dicts and plain config (`features.classifiers.classifier_payload`,
`cascade_payload` here). The same model gives the same bytes: strings are interned, so a model
loaded and saved again, or fitted after a resume, writes what a fresh one writes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core.atomic import save_torch_atomically
from features.classifiers import classifier_from_payload, classifier_payload
from features.configs import CascadeConfig
from features.devices import state_snapshot
from features.dlsa.cascade import Cascade
from features.dlsa.classifier import ClusterAidedClassifier
from features.dlsa.flow import FlowFilter
from features.dlsa.model import BankProvenance, DLSAModel
from features.errors import FeaturesError

MODEL_FORMAT = "tailbank-dlsa-model/2"


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
        "remainders": {kind: [classifier_payload(fitted) for fitted in fits]
                       for kind, fits in model.remainders.items()},
        "gates": {kind: int(filters) for kind, filters in model.gates.items()},
    }
    save_torch_atomically(_interned(payload), Path(path))


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
    except Exception:  # torch raises many types for foreign, truncated or crafted files
        raise FeaturesError(
            f"{path}: not a readable DLSA model; re-run `tailbank dlsa` to rewrite it (it is "
            "never unpickled beyond tensors and plain values)"
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
        remainders = {str(kind): [classifier_from_payload(fit, f"{path} (remainder {kind})")
                                  for fit in fits]
                      for kind, fits in payload["remainders"].items()}
        gates = {str(kind): int(filters) for kind, filters in payload["gates"].items()}
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise FeaturesError(f"{path}: a damaged DLSA model ({type(error).__name__}); re-run "
                            "`tailbank dlsa`") from None
    cascade = cascade_from_payload(payload["cascade"], str(path))
    return DLSAModel(cascade=cascade, bases=bases, remainders=remainders, gates=gates, bank=bank)


def cascade_payload(cascade: Cascade) -> dict[str, Any]:
    """A cascade as plain values and tensors (no times or paths); `cascade_from_payload` is
    the inverse."""
    return {
        "dim": cascade.dim,
        "num_classes": cascade.num_classes,
        "config": cascade.config.to_dict(),
        "thresholds": [float(value) for value in cascade.thresholds],
        "filters": [state_snapshot(flow, "cpu") for flow in cascade.filters],
        "classifiers": [state_snapshot(classifier, "cpu") for classifier in cascade.classifiers],
        "info": cascade.info,
    }


def cascade_from_payload(payload: dict[str, Any], where: str) -> Cascade:
    """Rebuilds a cascade from `cascade_payload` (CPU, eval mode).

    Raises:
        FeaturesError: one line naming `where` when the payload is damaged.
    """
    try:
        return _cascade_of(payload)
    except (KeyError, TypeError, ValueError, RuntimeError, FeaturesError) as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise FeaturesError(
            f"{where} holds a damaged DLSA cascade ({type(error).__name__}: {reason}); re-run "
            "the dlsa stage"
        ) from None


def _cascade_of(payload: dict[str, Any]) -> Cascade:
    config = CascadeConfig.from_dict(payload["config"])
    dim, num_classes = int(payload["dim"]), int(payload["num_classes"])
    filters, classifiers = [], []
    for index, (flow_state, classifier_state) in enumerate(
        zip(payload["filters"], payload["classifiers"], strict=True)
    ):
        flow_config = config.filter_config(index)
        flow = FlowFilter(dim, flow_config.num_clusters, seed=flow_config.seed,
                          sigma=flow_config.sigma, affine=flow_config.affine)
        flow.load_state_dict(flow_state)
        classifier = ClusterAidedClassifier(
            dim,
            dim,
            torch.zeros(flow_config.num_clusters, num_classes),
            torch.zeros(dim),
            torch.ones(dim),
            seed=config.seed + index,
        )
        classifier.load_state_dict(classifier_state)
        for module in (flow, classifier):
            module.eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
        filters.append(flow)
        classifiers.append(classifier)
    return Cascade(
        dim=dim,
        num_classes=num_classes,
        config=config,
        filters=filters,
        thresholds=[float(value) for value in payload["thresholds"]],
        classifiers=classifiers,
        info=list(payload["info"]),
    )


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
