"""``bsce``: Balanced Softmax cross-entropy (Ren et al., NeurIPS 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import Method, StepOutput
from pipeline.methods.losses import balanced_softmax_cross_entropy, log_class_prior
from pipeline.models import Backbone


class BalancedSoftmax(Method):
    """Trains on logits + log n_c (Eq. 4 of Ren et al.); predicts with the plain logits."""

    name: ClassVar[str] = "bsce"

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`; also registers the ``[C]`` buffer ``log_prior`` = log n_c.

        Raises:
            PipelineError: a class has no training image.
        """
        super().__init__(backbone, class_counts, options)
        self.register_buffer("log_prior", log_class_prior(class_counts, self.name))

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """Balanced Softmax loss of one batch.

        Args:
            images: ``[B, C_in, H, W]`` images.
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).

        Returns:
            Mean Balanced Softmax loss and the plain ``[B, C]`` logits (the test-time rule).
        """
        logits = self.backbone(images)
        loss = balanced_softmax_cross_entropy(logits, labels, self.log_prior)
        return StepOutput(loss=loss, logits=logits.detach())
