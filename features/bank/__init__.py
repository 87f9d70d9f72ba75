"""Feature banks (HDF5, schema version 3) and the rows stage 2 reads from them.

- `schema`: the layout, the attributes (`BankMeta`) and their checks; the size estimate.
- `writer`: `BankWriter`, the streaming writer that renames a complete bank into place.
- `digest`: the 64-bit digest of each chunk of a row dataset.
- `chunkio`: whole-chunk writes with their digests, and reads that verify every chunk.
- `verify`: the checks of attributes, dtypes, shapes and digest tables a bank passes when it
  opens.
- `reader`: `Bank`, the validating reader (whole datasets, blocks, gathered rows).
- `imported`: features computed elsewhere (.npz, .pt, .npy files), read and checked for a bank.
- `chunks`: chunk-aligned slicing of reads.
- `arrays`: checked conversions of the arrays every stage-2 function takes.
- `rows`: `FeatureRows`, rows in memory or read from a bank on demand under a memory budget
  (torch); import it as `features.bank.rows`, so a stage that only writes or reads banks does
  not import torch.
"""

from core.splits import SPLITS
from features.bank.chunks import position_vector
from features.bank.reader import Bank
from features.bank.schema import SCHEMA_VERSION, BankMeta, estimated_bank_bytes
from features.bank.writer import BankWriter

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "Bank",
    "BankMeta",
    "BankWriter",
    "estimated_bank_bytes",
    "position_vector",
]
