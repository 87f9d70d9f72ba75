"""``bsce``: Balanced Softmax cross-entropy (Ren et al., NeurIPS 2020)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import LogitLoss
from pipeline.methods.losses import balanced_softmax_cross_entropy, log_class_prior
from pipeline.models import Backbone


class BalancedSoftmax(LogitLoss):
    """Trains on logits + log n_c (Eq. 4 of Ren et al.); predicts with the plain logits."""

    name: ClassVar[str] = "bsce"

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`; also registers the ``[C]`` buffer ``log_prior`` = log n_c.

        Raises:
            PipelineError: a class has no training image.
        """
        super().__init__(backbone, class_counts, options)
        self.register_buffer("log_prior", log_class_prior(class_counts, self.name))

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean Balanced Softmax loss; the plain logits are the test-time rule."""
        return balanced_softmax_cross_entropy(logits, labels, self.log_prior)
