"""``ce``: plain softmax cross-entropy on instance-sampled batches, the long-tail baseline."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from pipeline.methods.base import LogitLoss


class CrossEntropy(LogitLoss):
    """Minimises ``-log softmax(eta)_y`` of the backbone's linear head."""

    name: ClassVar[str] = "ce"

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy (the plain logits are the test-time rule too)."""
        return F.cross_entropy(logits, labels)
