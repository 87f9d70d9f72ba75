"""Where each stage reads and writes: the paths of the DAG in one place (see dvc.yaml)."""

from __future__ import annotations

from pathlib import Path

import torch

from stages.errors import StageError


def splits_path(dataset: str) -> Path:
    """The prepare stage's output: train/val/test indices and class counts."""
    return Path("data/splits") / f"{dataset}.json"


def model_path(method: str) -> Path:
    """The best-on-val checkpoint of a pretrained method (a DVC output)."""
    return Path("models") / method / "model.pt"


def resume_path(method: str, stage: str = "pretrain") -> Path:
    """Per-epoch checkpoint of an unfinished run.

    Deliberately not a DVC output: DVC deletes a stage's outputs before it runs, which would
    throw away an interrupted run. The stage removes it once it completes.
    """
    return Path("checkpoints") / stage / f"{method}.pt"


def pretrain_results(method: str) -> Path:
    """Training metrics and DVCLive curves of a method."""
    return Path("results/pretrain") / method


def bank_path(method: str) -> Path:
    """The HDF5 feature bank of a method."""
    return Path("banks") / f"{method}.h5"


def classify_results(method: str) -> Path:
    """Metrics and per-class plots of the classifiers trained on a method's bank."""
    return Path("results/classify") / method


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; an explicit CUDA device must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(f"params.yaml: device '{name}' asked for but no CUDA device is visible; "
                         "set it to auto or cpu")
    return torch.device(name)


def require_file(path: Path, made_by: str) -> Path:
    """An upstream output must exist: say which stage makes it when it does not."""
    if not path.is_file():
        raise StageError(f"{path}: not found; run `{made_by}` (or `dvc repro`) first")
    return path


def dlsa_model_dir(method: str) -> Path:
    """The fitted DLSA cascade of a method's bank and the base classifiers it was scored with."""
    return Path("models/dlsa") / method


def dlsa_results(method: str) -> Path:
    """Metrics (base vs base + DLSA) and per-filter statistics of a method's DLSA cascade."""
    return Path("results/dlsa") / method


def dlsa_resume_dir(method: str) -> Path:
    """Per-filter flow checkpoints of an unfinished DLSA fit (not a DVC output, like pretrain's)."""
    return Path("checkpoints/dlsa") / method


def analyze_results(method: str) -> Path:
    """Feature-quality analysis of a method's bank: JSON, headline metrics, plot tables."""
    return Path("results/analyze") / method


def report_dir() -> Path:
    """The report of every method side by side (``index.html``, ``summary.md``)."""
    return Path("reports")
