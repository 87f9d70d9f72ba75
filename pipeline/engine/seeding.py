"""One call that seeds every global random stream a training run may touch."""

from __future__ import annotations

import os
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


def use_deterministic_cuda(enabled: bool) -> None:
    """Make CUDA training bit-for-bit repeatable (``train.deterministic``), at some speed.

    Turns on torch's deterministic algorithms (an op without a deterministic CUDA kernel then
    raises instead of silently varying), pins cuDNN to deterministic convolutions without
    autotuning, and gives cuBLAS the fixed workspace it needs for repeatable GEMMs. Must run
    before the first cuBLAS call of the process. Without it, CUDA runs agree only to
    floating-point tolerance (atomics in scatter/index_add and cuDNN's autotuner vary).

    Args:
        enabled: whether to switch determinism on (False leaves the defaults alone).
    """
    if not enabled or not torch.cuda.is_available():
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
