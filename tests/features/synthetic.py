"""Synthetic data of the analysis tests: Gaussian class blobs and a tiny bank written to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.bank import BankMeta, BankWriter


def blobs(
    per_class: np.ndarray, dim: int, seed: int, spread: float = 1.0, scale: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class[c]` rows around class centre c (centres fixed across seeds)."""
    centres = scale * np.random.default_rng(99).normal(size=(len(per_class), dim))
    labels = np.repeat(np.arange(len(per_class)), per_class)
    noise = np.random.default_rng(seed).normal(size=(len(labels), dim))
    return (centres[labels] + spread * noise).astype(np.float32), labels


COUNTS = np.array([120, 60, 30, 12, 6])


def write_bank(
    path: Path, logits: bool = True, method: str = "ce", counts: np.ndarray = COUNTS
) -> None:
    """A bank of `counts` train rows per class (4 val, 8 test per class), logits and an extra
    view `z`; the same arguments give the same bytes."""
    meta = BankMeta(
        method=method,
        backbone="resnet32",
        dataset="digits_lt",
        num_classes=len(counts),
        feature_dim=6,
        seed=0,
        params_digest="a" * 64,
        checkpoint_sha256="b" * 64,
        class_counts=np.asarray(counts, np.int64),
        tailbank_version="0.1.0",
    )
    rng = np.random.default_rng(7)
    num_classes = len(counts)
    with BankWriter(path, meta, chunk_bytes=256) as writer:
        splits = (
            ("train", counts),
            ("val", np.full(num_classes, 4)),
            ("test", np.full(num_classes, 8)),
        )
        for seed, (split, per_class) in enumerate(splits):
            x, y = blobs(per_class, dim=6, seed=seed, spread=1.5)
            writer.append(
                split,
                features=x,
                labels=y,
                index=np.arange(len(y)),
                logits=rng.normal(size=(len(y), num_classes)).astype(np.float32)
                if logits
                else None,
                extra={"z": x[:, :2] * 3.0},
            )
