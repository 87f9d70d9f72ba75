"""Where each stage reads and writes: the paths of the DAG in one place (see dvc.yaml).

Every output of a training seed lives under a ``seed<k>`` folder (or file) of its method, so
seeds never overwrite each other: ``models/<m>/seed<k>/model.pt``, ``banks/<m>/seed<k>.h5``,
``results/<stage>/<m>/seed<k>/``. A seed may also be ``"${item}"``: the placeholder that
dvc.yaml's ``foreach: ${seeds}`` fills in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from core.devices import resolve_device as core_resolve_device
from stages.errors import StageError

if TYPE_CHECKING:
    import torch

    from stages.params import Params

Seed = int | str
SEED_ITEM = "${item}"
RESULTS = Path("results")
RESULT_FOLDERS = (RESULTS / "classify", RESULTS / "dlsa", RESULTS / "analyze",
                  RESULTS / "pretrain")


def _seed(seed: Seed) -> str:
    return f"seed{seed}"


def splits_path(dataset: str) -> Path:
    """The prepare stage's output: train/val/test indices and class counts."""
    return Path("data/splits") / f"{dataset}.json"


def model_path(method: str, seed: Seed) -> Path:
    """The best-on-val checkpoint of a pretrained method (a DVC output)."""
    return Path("models") / method / _seed(seed) / "model.pt"


def resume_path(method: str, seed: Seed) -> Path:
    """Per-epoch checkpoint of an unfinished pretrain run.

    Deliberately not a DVC output: DVC deletes a stage's outputs before it runs, which would
    throw away an interrupted run. The stage removes it once it completes.
    """
    return Path("checkpoints/pretrain") / method / f"{_seed(seed)}.pt"


def sweep_resume_dir(method: str, seed: Seed) -> Path:
    """Per-epoch checkpoints of an unfinished pretrain run that sweeps an option, one file per
    value (``<option>=<value>.pt``); like `resume_path`, not a DVC output. A finished value's
    file stays until the whole stage completes, so a rerun does not train it again."""
    return Path("checkpoints/pretrain") / method / _seed(seed)


def pretrain_results(method: str, seed: Seed) -> Path:
    """Training metrics and DVCLive curves of a method."""
    return RESULTS / "pretrain" / method / _seed(seed)


def bank_path(method: str, seed: Seed) -> Path:
    """The HDF5 feature bank of a method."""
    return Path("banks") / method / f"{_seed(seed)}.h5"


def classify_results(method: str, seed: Seed) -> Path:
    """Metrics, test predictions and per-class plots of the classifiers on a method's bank."""
    return RESULTS / "classify" / method / _seed(seed)


def dlsa_model_dir(method: str, seed: Seed) -> Path:
    """The fitted DLSA model (cascade and base classifiers) of a method's bank."""
    return Path("models/dlsa") / method / _seed(seed)


DLSA_MODEL_FILE = "model.pt"
"""The file of a DLSA model folder that ``dlsa`` writes and ``route`` reads."""


def dlsa_results(method: str, seed: Seed) -> Path:
    """Metrics (base vs base + DLSA), test predictions and per-filter statistics of a method's
    DLSA cascade."""
    return RESULTS / "dlsa" / method / _seed(seed)


def dlsa_resume_dir(method: str, seed: Seed) -> Path:
    """Per-filter flow checkpoints of an unfinished DLSA fit (not a DVC output, like pretrain's)."""
    return Path("checkpoints/dlsa") / method / _seed(seed)


def analyze_results(method: str, seed: Seed) -> Path:
    """Feature-quality analysis of a method's bank: JSON, headline numbers, plot tables."""
    return RESULTS / "analyze" / method / _seed(seed)


def report_dir() -> Path:
    """The report of every method side by side (``index.html``, ``summary.md``)."""
    return Path("reports")


def summary_dir() -> Path:
    """The DAG's metrics files, one per method (``dvc metrics show``: a row each)."""
    return RESULTS / "summary"


def method_summary(method: str) -> Path:
    """A method's metrics file: its classifier chosen on val, means over the seeds."""
    return summary_dir() / f"{method}.json"


def plot_tables_dir() -> Path:
    """The tables the top-level plots of dvc.yaml overlay, one folder per method."""
    return report_dir() / "plots"


def plot_table(method: str, name: str) -> Path:
    """One overlay table of ``method`` (``curves.csv``, ``per_class.csv``, ``tsne.csv``)."""
    return plot_tables_dir() / method / name


def resolve_device(name: str) -> torch.device:
    """A params.yaml device (`core.devices.resolve_device`): ``auto`` -> CUDA when present,
    else CPU; an explicit CUDA device must exist."""
    return core_resolve_device(name, key="params.yaml", error=StageError, require_visible=True)


def require_file(path: Path, made_by: str) -> Path:
    """An upstream output must exist: say which stage makes it when it does not."""
    if not path.is_file():
        raise StageError(f"{path}: not found; run `{made_by}` (or `dvc repro`) first")
    return path


def require_splits(dataset: str) -> Path:
    """The splits file of a dataset, which stage 1 reads; `prepare` makes it."""
    return require_file(splits_path(dataset), "tailbank prepare")


REDO_PREPARE = "delete it and run `tailbank prepare`"
"""How a user replaces a damaged splits file."""


def require_bank(method: str, seed: int) -> Path:
    """The bank of a method's seed, which the stage-2 stages read; `dump` makes it."""
    return require_file(bank_path(method, seed), f"tailbank dump --method {method} --seed {seed}")


def require_stage2_bank(params: Params, method: str, seed: int) -> Path:
    """The bank a stage-2 stage (classify, dlsa, analyze) reads.

    That of a method of params.yaml, or, under a key params.yaml does not name, a bank that
    ``tailbank import-bank`` or ``tailbank dump --checkpoint`` wrote; `check_bank_origin`
    confirms which once the bank is open.
    """
    if not _names_method(params, method) and not bank_path(method, seed).is_file():
        params.method(method)  # the one-line error that lists the methods there are
    return require_bank(method, seed)


def check_bank_origin(params: Params, method: str, source_kind: str | None) -> None:
    """A bank filed under a key params.yaml does not name must come from elsewhere (its
    ``source_kind`` attribute says so); a dumped one belongs to a method of params.yaml."""
    if source_kind is None:
        params.method(method)


def _names_method(params: Params, method: str) -> bool:
    # a lookup, not a read of the whole `methods:` section (which no stage-2 stage depends on)
    try:
        params.method(method)
    except StageError:
        return False
    return True
