"""The dvc.yaml blocks of ``imports:``: banks from elsewhere, for `stages.dag` to add.

An entry of kind ``imported`` becomes ``import-<key>`` (``tailbank import-bank``), one of kind
``checkpoint`` becomes ``dump-<key>`` (``tailbank dump``, which reads the entry); both write
``banks/<key>/seed<k>.h5`` over ``foreach: ${seeds}``, with the source file as a dependency
(``{seed}`` in its path becomes DVC's ``${item}``). The classify, dlsa and analyze blocks of a
key are those of a method, on that bank.
"""

from __future__ import annotations

from typing import Any

from stages.dag import code_dependencies, stage_name
from stages.imports_section import SEED_PLACEHOLDER
from stages.layout import SEED_ITEM, bank_path, splits_path


def import_blocks(imports: dict[str, Any]) -> dict[str, Any]:
    """The blocks that make the bank of each entry of ``imports:``.

    Args:
        imports: ``Params.model_dump(mode="json")["imports"]``: key -> its entry (kind,
            source, ...).

    Returns:
        DVC stage name -> its block, in the order of ``imports``.
    """
    blocks: dict[str, Any] = {}
    for key, entry in imports.items():
        seed = SEED_ITEM
        source = entry["source"].replace(SEED_PLACEHOLDER, seed)
        bank = str(bank_path(key, seed))
        if entry["kind"] == "imported":
            blocks[stage_name("import", key)] = _over_seeds({
                "cmd": f"tailbank import-bank --method {key} --seed {seed}",
                "deps": [source, *code_dependencies("stages.import_bank")],
                "params": [f"imports.{key}"],
                "outs": [bank],
            })
        else:
            blocks[stage_name("dump", key)] = _over_seeds({
                "cmd": f"tailbank dump --method {key} --seed {seed}",
                "deps": [source, str(splits_path("${data.dataset}")),
                         *code_dependencies("stages.dump")],
                "params": ["data", "dump", f"imports.{key}"],
                "outs": [bank],
            })
    return blocks


def _over_seeds(block: dict[str, Any]) -> dict[str, Any]:
    return {"foreach": "${seeds}", "do": block}
