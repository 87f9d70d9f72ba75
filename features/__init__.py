"""Stage-2 library: feature banks to decisions.

HDF5 banks (`features.bank`) and their rows in memory or read on demand under a memory budget
(`features.rows`), a bank's splits as one value (`features.bank_splits`), classifiers on
banks (`features.classifiers`), evaluation
(`features.metrics`), DLSA flow filters (`features.dlsa.flow`, `features.dlsa.losses`,
`features.dlsa.training`) and their cascade (`features.dlsa.cascade`), and the feature-quality
analysis (`features.knn`, `features.analysis`). Knows nothing of images, DVC or params.yaml.
"""
