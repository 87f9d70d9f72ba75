"""``tailbank route``: apply a fitted DLSA model to a bank and write its predictions.

No retraining: the cascade's thresholds, cluster priors and classifiers are used as fitted,
so a new bank of the same backbone (or the same bank's other splits) is routed in seconds.
The model file is read without unpickling objects, so a model received from someone else can
fail to load but cannot run code.
"""

from __future__ import annotations

from pathlib import Path

from core.splits import SPLITS
from features.bank import Bank
from features.bank.rows import load_rows
from features.dlsa.io import load_dlsa_model
from stages.errors import StageError
from stages.io import write_csv
from stages.layout import DLSA_MODEL_FILE
from stages.outputs import StageOutputs


def run(
    model_dir: Path,
    bank_file: Path,
    base_kind: str | None,
    out_dir: Path,
    budget_bytes: int | None = None,
    filters: int | None = None,
) -> dict[str, float]:
    """Route every split of ``bank_file`` through the DLSA model in ``model_dir``.

    Writes ``<out_dir>/<split>.csv`` with one row per sample: its bank index, label, the filter
    that routed it (``0``-based; ``-1``: the remainder, scored by the base classifier) and the
    predicted class. The tables of all splits are swapped into ``out_dir`` together.

    Args:
        model_dir: a ``models/dlsa/<method>`` folder.
        bank_file: an HDF5 bank of the backbone checkpoint the model was fitted on.
        base_kind: which saved base classifier scores the remainder; the first when ``None``.
        out_dir: the folder of the prediction tables; created, or replaced when it holds an
            earlier run's tables.
        budget_bytes: bank rows held in memory at once; a larger bank is read in windows.
        filters: how many filters route (0 .. F); None: the number the val gate chose.

    Returns:
        Accuracy per split of base + DLSA.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise StageError(f"--out {out_dir}: is a file; name a folder for the prediction tables")
    model_file = model_dir / DLSA_MODEL_FILE
    model = load_dlsa_model(model_file)
    kind = base_kind or next(iter(model.bases), None)
    if kind not in model.bases:
        raise StageError(f"{model_file}: no base classifier '{kind}'; saved: "
                         f"{', '.join(model.bases) or 'none'} (pass one of them to --base)")
    _check_out_dir(out_dir)
    used = model.gates.get(kind, model.num_filters) if filters is None else filters
    if not 0 <= used <= model.num_filters:
        raise StageError(f"--filters {filters}: the model has {model.num_filters} filters; give "
                         f"0 to {model.num_filters}")
    accuracy = {}
    with Bank.open(bank_file) as bank, StageOutputs(folders=[out_dir]) as out:
        model.check_bank(bank.meta, str(bank_file))
        for split in bank.splits:
            keys = [(split, field) for field in ("features", "logits") if bank.has(split, field)]
            rows = load_rows(bank, keys, budget_bytes)
            features, labels = rows[split, "features"], bank.labels(split)
            walk = model.cascade.walk(features)
            logits = model.logits(kind, features, rows.get((split, "logits")), used, walk)
            predicted = logits.argmax(axis=1)
            table = zip(bank.index(split).tolist(), labels.tolist(),
                        walk.truncated(used).assignment.tolist(), predicted.tolist(), strict=True)
            write_csv(out.staged(out_dir) / f"{split}.csv",
                      ("index", "label", "filter", "prediction"), list(table))
            accuracy[split] = float((predicted == labels).mean()) if len(labels) else float("nan")
    return accuracy


def _check_out_dir(out_dir: Path) -> None:
    """``--out`` is replaced whole, so it may only hold what an earlier route wrote."""
    if not out_dir.is_dir():
        return
    tables = {f"{split}.csv" for split in SPLITS}
    foreign = sorted(path.name for path in out_dir.iterdir()
                     if not (path.is_file() and path.name in tables))
    if foreign:
        raise StageError(f"--out {out_dir}: holds {', '.join(foreign[:3])}, which are not "
                         "prediction tables; name an empty or new folder")
