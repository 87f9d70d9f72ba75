"""The dvc.yaml blocks of ``imports:``: banks from elsewhere, for `stages.dag.blocks_by_file`.

An entry of kind ``imported`` becomes ``import-<key>`` (``tailbank import-bank``), one of kind
``checkpoint`` becomes ``dump-<key>`` (``tailbank dump``, which reads the entry); both write
``banks/<key>/seed<k>.h5`` over ``foreach: ${seeds}``, with the source file as a dependency
(``{seed}`` in its path becomes DVC's ``${item}``). The classify, dlsa and analyze blocks of a
key are those of a method, on that bank.
"""

from __future__ import annotations

from typing import Any

from stages.dag import IMPORT_STAGES
from stages.imports_section import SEED_PLACEHOLDER
from stages.layout import SEED_ITEM, bank_path, splits_path


def import_blocks(imports: dict[str, Any], dataset: str | None = None) -> dict[str, Any]:
    """The blocks that make the bank of each entry of ``imports:``.

    Args:
        imports: ``Params.model_dump(mode="json")["imports"]``: key -> its entry (kind,
            source, ...).
        dataset: ``data.dataset`` (whose machine-only keys are no params; `stages.machine`).

    Returns:
        DVC stage name -> its block, in the order of ``imports``.
    """
    blocks: dict[str, Any] = {}
    for key, entry in imports.items():
        source = entry["source"].replace(SEED_PLACEHOLDER, SEED_ITEM)
        # a checkpoint's features are of data's images, which prepare splits
        splits = (str(splits_path("${data.dataset}")),) if entry["kind"] == "checkpoint" else ()
        name, block = IMPORT_STAGES[entry["kind"]].block(
            key, dataset, reads=(source, *splits), outs=[str(bank_path(key, SEED_ITEM))])
        blocks[name] = block
    return blocks
