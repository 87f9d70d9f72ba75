"""One call that seeds every global random stream a training run may touch."""

from __future__ import annotations

import random

import numpy as np
import torch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); on a CPU-only host, also forbid
    non-deterministic torch kernels so runs are bit-for-bit repeatable.

    On CUDA hosts deterministic kernels are left off: several (cuBLAS, scatter) would need
    ``CUBLAS_WORKSPACE_CONFIG`` or run slower, and GPU runs are only reproducible to
    floating-point tolerance anyway.

    Args:
        seed: a non-negative integer.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True)
