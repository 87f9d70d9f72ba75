"""Stage ``import-bank``: features computed elsewhere into ``banks/<method>/seed<k>.h5``.

The source follows the contract of `features.bank.imported` (``<split>_features``,
``<split>_labels``, optional logits, index, class names). The bank it writes is a schema-1
bank like a dumped one, so ``classify``, ``dlsa`` and ``analyze`` run on it unchanged; its
attributes record where the features came from (``source_kind`` "imported", ``source`` and,
as ``checkpoint_sha256``, the source's sha256) instead of a tailbank checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from features.bank import BankMeta, BankWriter, estimated_bank_bytes
from features.bank.imported import ImportedFeatures, read_imported
from stages.errors import StageError
from stages.layout import bank_path
from stages.outputs import check_space, check_writable
from stages.params import Params, section_digest
from stages.progress import log
from stages.version import tailbank_version

IMPORTED = "imported"


def run(params: Params, method_name: str, seed: int) -> Path:
    """Write the bank of entry ``imports.<method_name>`` (kind imported) for one seed.

    Returns:
        The path of the bank.
    """
    entry = params.imported(method_name)
    if entry.kind != IMPORTED:
        raise StageError(f"imports.{method_name} is of kind '{entry.kind}': run `tailbank dump "
                         f"--method {method_name}` for it")
    return import_source(entry.source_of(seed), method_name, seed,
                         dataset=entry.dataset or IMPORTED, backbone=entry.backbone or IMPORTED)


def import_source(source: Path, method_name: str, seed: int, *, dataset: str = IMPORTED,
                  backbone: str = IMPORTED) -> Path:
    """Check ``source`` and write it as the bank of ``method_name``'s seed ``seed``.

    Args:
        source: a ``.npz``, ``.pt``/``.pth`` file or a folder of ``<key>.npy`` files.
        method_name: the key the bank is filed under (``banks/<method>/seed<k>.h5``); stage 2
            is then run with ``--method <method>``.
        seed: the seed the bank is filed under (and that seeds stage 2's classifiers).
        dataset: the name of the data set the features come from, for the report.
        backbone: the name of the network that computed them, for the report.

    Returns:
        The path of the bank.
    """
    target = bank_path(method_name, seed)
    check_writable(target, folder=False)
    imported = read_imported(Path(source))
    meta = _meta(imported, Path(source), method_name, seed, dataset, backbone)
    sizes = {split: len(rows.labels) for split, rows in imported.splits.items()}
    with_logits = imported.splits["train"].logits is not None  # all splits or none
    check_space(target, estimated_bank_bytes(sizes, meta, logits=with_logits))
    with BankWriter(target, meta, split_sizes=sizes) as bank:
        for split, rows in imported.splits.items():
            bank.append(split, features=rows.features, labels=rows.labels, index=rows.index,
                        logits=rows.logits)
    log(f"import-bank {method_name}: " + ", ".join(f"{split} {rows}" for split, rows in
                                                  sizes.items()) + f" from {source} -> {target}")
    return target


def _meta(imported: ImportedFeatures, source: Path, method_name: str, seed: int, dataset: str,
          backbone: str) -> BankMeta:
    return BankMeta(
        method=method_name,
        backbone=backbone,
        dataset=dataset,
        num_classes=imported.num_classes,
        feature_dim=imported.feature_dim,
        seed=seed,
        # what made the bank: the source's bytes and how they were filed
        params_digest=section_digest({"import": {"sha256": imported.sha256, "dataset": dataset,
                                                 "backbone": backbone}}),
        checkpoint_sha256=imported.sha256,
        class_counts=imported.class_counts,
        class_names=imported.class_names,
        augment="none",
        tailbank_version=tailbank_version(),
        source_kind=IMPORTED,
        source=str(source),
    )
