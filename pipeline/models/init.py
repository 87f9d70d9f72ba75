"""Seeded weight initialisation that leaves the caller's global random state untouched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def seeded_initialisation(seed: int | None) -> Iterator[None]:
    """Make module construction inside the block draw its initial weights from ``seed``.

    PyTorch's layer constructors and ``nn.init`` draw from the default CPU generator; reseeding
    it inside a forked random state makes the weights a function of ``seed`` alone while the
    caller's random stream continues exactly as if nothing had been drawn.

    Args:
        seed: the seed of the initial weights; ``None`` draws from the current default
            generator instead (seed it first, e.g. with ``pipeline.engine.set_seed``).
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
