"""Stage-2 library: feature banks to decisions.

HDF5 banks (`features.bank`), classifiers on banks (`features.classifiers`), evaluation
(`features.metrics`). Knows nothing of images, DVC or params.yaml.
"""
