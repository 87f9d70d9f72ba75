"""Stage-1 learning library: images to backbones.

Datasets and long-tail splits (`pipeline.data`), backbones with feature hooks
(`pipeline.models`), one module per long-tail method (`pipeline.methods`) and the
training engine (`pipeline.engine`). Knows nothing of DVC, params.yaml or HDF5.
"""
