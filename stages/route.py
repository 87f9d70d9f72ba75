"""``tailbank route``: apply a fitted DLSA cascade to a bank and write its predictions.

No retraining: the cascade's thresholds, cluster priors and classifiers are used as fitted,
so a new bank of the same backbone (or the same bank's other splits) is routed in seconds.
"""

from __future__ import annotations

from pathlib import Path

from features.bank import Bank
from features.dlsa import load_cascade
from features.rows import load_rows
from stages.classify import classifier_logits
from stages.dlsa import BASES_FILE, CASCADE_FILE, load_bases
from stages.errors import StageError
from stages.io import write_csv


def run(
    model_dir: Path,
    bank_file: Path,
    base_kind: str | None,
    out_dir: Path,
    budget_bytes: int | None = None,
) -> dict[str, float]:
    """Route every split of ``bank_file`` through the cascade in ``model_dir``.

    Writes ``<out_dir>/<split>.csv`` with one row per sample: its bank index, label, the filter
    that routed it (``0``-based; ``-1``: the remainder, scored by the base classifier) and the
    predicted class.

    Args:
        model_dir: a ``models/dlsa/<method>`` folder.
        bank_file: an HDF5 bank with the cascade's feature width and classes.
        base_kind: which saved base classifier scores the remainder; the first when ``None``.
        out_dir: where the prediction tables go.
        budget_bytes: bank rows held in memory at once; a larger bank is read in windows.

    Returns:
        Accuracy per split of base + DLSA.
    """
    cascade = load_cascade(model_dir / CASCADE_FILE)
    bases = load_bases(model_dir / BASES_FILE)
    kind = base_kind or next(iter(bases))
    if kind not in bases:
        raise StageError(f"{model_dir / BASES_FILE}: no base classifier '{kind}'; saved: "
                         f"{', '.join(bases)} (pass one of them to --base)")
    accuracy = {}
    with Bank.open(bank_file) as bank:
        cascade.check_bank(bank.meta.feature_dim, bank.meta.num_classes, str(bank_file))
        for split in bank.splits:
            keys = [(split, field) for field in ("features", "logits") if bank.has(split, field)]
            rows = load_rows(bank, keys, budget_bytes)
            features, labels = rows[split, "features"], bank.labels(split)
            plain = classifier_logits(bases[kind], features, rows.get((split, "logits")))
            routed = cascade.route(features)
            predicted = routed.combine(plain).argmax(axis=1)
            table = zip(bank.index(split).tolist(), labels.tolist(),
                        routed.assignment.tolist(), predicted.tolist(), strict=True)
            write_csv(out_dir / f"{split}.csv", ("index", "label", "filter", "prediction"),
                      list(table))
            accuracy[split] = float((predicted == labels).mean()) if len(labels) else float("nan")
    return accuracy
