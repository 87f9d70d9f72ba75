"""The ``imports:`` section of params.yaml: banks that stage 2 works on without `pretrain`.

An entry is features computed elsewhere (``kind: imported``, `tailbank import-bank`) or the
weights of a network trained elsewhere (``kind: checkpoint``, `tailbank dump`); either way it
becomes ``banks/<key>/seed<k>.h5``, and classify, dlsa and analyze take ``--method <key>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Strict, model_validator

from pipeline.models.names import BACKBONES
from stages.sections import Str, StrictSection, known, one_of

IMPORT_KINDS = ("imported", "checkpoint")
ImportKind = Annotated[str, Strict(), known(IMPORT_KINDS)]
SEED_PLACEHOLDER = "{seed}"


class ImportParams(StrictSection):
    """One entry of ``imports:``: a bank from elsewhere, filed as ``banks/<key>/seed<k>.h5``.

    Stage 2 (classify, dlsa, analyze) runs on it with ``--method <key>`` like on a method's.

    Attributes:
        kind: ``imported``: ``source`` holds features computed elsewhere (`tailbank
            import-bank`); ``checkpoint``: ``source`` holds the weights of a network trained
            elsewhere, whose features of ``data``'s images are dumped (`tailbank dump`).
        source: the file (a folder of .npy files for ``imported``), relative to the project;
            ``{seed}`` in it is replaced by each seed of ``seeds:`` (one file per seed).
        backbone: ``checkpoint``: the architecture of the weights (required); ``imported``:
            the network's name, for the report.
        dataset: ``imported``: the data set's name, for the report (``checkpoint`` uses
            ``data.dataset``).
    """

    kind: ImportKind
    source: Str
    backbone: Str | None = None
    dataset: Str | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ImportParams:
        if self.kind == "checkpoint":
            if self.backbone is None:
                raise ValueError("kind 'checkpoint' needs backbone: the architecture of the "
                                 f"weights (one of {', '.join(BACKBONES)})")
            one_of(self.backbone, BACKBONES)
            if self.dataset is not None:
                raise ValueError("kind 'checkpoint' dumps data.dataset; remove dataset")
        return self

    def source_of(self, seed: int) -> Path:
        """The source file of one seed."""
        return Path(self.source.replace(SEED_PLACEHOLDER, str(seed)))
