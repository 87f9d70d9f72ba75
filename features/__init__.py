"""Stage-2 library: feature banks to decisions.

- `bank/`: HDF5 banks (schema, writer, verifying reader) and their rows in memory or read on
  demand under a memory budget (`features.bank.rows`); a bank's splits as one value
  (`features.bank.splits`).
- `classifiers/`: classifiers on banks, one registry of kinds; `metrics`: their evaluation.
- `dlsa/`: DLSA flow filters and their cascade with cluster-aided classifiers.
- `analysis/`: the feature-quality analysis (kNN, k-means, rho, head/tail probe, posterior)
  and its typed result.
- `report/`: the HTML page and Markdown summary of every method side by side.

Knows nothing of images, DVC or params.yaml.
"""
