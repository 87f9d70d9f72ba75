"""``cbs``: cross-entropy on class-balanced batches (every class drawn equally often)."""

from __future__ import annotations

from typing import ClassVar

from pipeline.methods.ce import CrossEntropy


class ClassBalancedSampling(CrossEntropy):
    """The ``ce`` loss; only the sampler the engine's caller builds differs."""

    name: ClassVar[str] = "cbs"
    sampling: ClassVar[str] = "class_balanced"
