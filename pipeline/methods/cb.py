"""``cb``: the class-balanced loss (Cui et al., "Class-balanced loss based on effective number
of samples", CVPR 2019) over a softmax or focal base loss."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import LogitLoss
from pipeline.methods.cb_loss import class_balanced_loss, effective_number_weights
from pipeline.methods.kinds import ClassBalancedOptions
from pipeline.models import Backbone


class ClassBalanced(LogitLoss):
    """Weighs each sample's base loss by its class's inverse effective number.

    Attributes:
        class_weights: ``[C]`` buffer ``C (1 - beta) / (1 - beta^n_c)`` normalised to sum C.
    """

    name: ClassVar[str] = "cb"
    Options: ClassVar[type] = ClassBalancedOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`.

        Raises:
            PipelineError: a class has no training image.
        """
        super().__init__(backbone, class_counts, options)
        self.register_buffer(
            "class_weights", effective_number_weights(class_counts, options.beta, self.name)
        )

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean class-balanced loss."""
        return class_balanced_loss(
            logits, labels, self.class_weights, self.options.loss, self.options.gamma
        )
