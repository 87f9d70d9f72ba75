"""Params keys that say where or on what the work runs, never what it computes.

They are no stage's params in dvc.yaml and are left out of the digests that models and banks
carry (`stages.params.section_digest`), so moving the data, changing the loader's workers or
running on another device re-runs nothing and gives the same bytes. The memory budget is one
of them: the outputs are the same for any budget.

``data.root`` is the one key whose role depends on the data set: for the user's own images
(``image_folder``, ``image_list``) the folder *is* the data, so there it stays a param of the
stages that read images and part of the digests.
"""

from __future__ import annotations

from pipeline.data.names import USER_DATASETS

MACHINE_KEYS: tuple[str, ...] = (
    "data.root",
    "data.download",
    "train.num_workers",
    "train.device",
    "dump.device",
    "classify.device",
    "dlsa.device",
    "analyze.use_gpu",
    "memory",
)


def machine_keys(dataset: str | None = None) -> tuple[str, ...]:
    """The machine-only keys when the data set is ``dataset`` (None: any built-in one)."""
    if dataset in USER_DATASETS:
        return tuple(key for key in MACHINE_KEYS if key != "data.root")
    return MACHINE_KEYS


def machine_fields(section: str, dataset: str | None = None) -> frozenset[str]:
    """The machine-only fields of the params section ``section`` (e.g. ``"train"``)."""
    prefix = section + "."
    return frozenset(key.removeprefix(prefix) for key in machine_keys(dataset)
                     if key.startswith(prefix))
