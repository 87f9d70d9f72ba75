"""``ce``: plain softmax cross-entropy on instance-sampled batches, the long-tail baseline."""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor

from pipeline.methods.base import Method, StepOutput


class CrossEntropy(Method):
    """Minimises ``-log softmax(eta)_y`` of the backbone's linear head."""

    name: ClassVar[str] = "ce"

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """Cross-entropy of one batch.

        Args:
            images: ``[B, C_in, H, W]`` images.
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).

        Returns:
            Mean cross-entropy and the ``[B, C]`` logits.
        """
        logits = self.backbone(images)
        return StepOutput(loss=F.cross_entropy(logits, labels), logits=logits.detach())
