"""``cb``: the class-balanced loss (Cui et al., "Class-balanced loss based on effective number
of samples", CVPR 2019) over a softmax or focal base loss."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import Method, StepOutput
from pipeline.methods.cb_loss import class_balanced_loss, effective_number_weights
from pipeline.methods.kinds import ClassBalancedOptions
from pipeline.models import Backbone


class ClassBalanced(Method):
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

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """Class-balanced loss of one batch.

        Args:
            images: ``[B, C_in, H, W]`` images.
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).

        Returns:
            Mean class-balanced loss and the ``[B, C]`` logits.
        """
        logits = self.backbone(images)
        loss = class_balanced_loss(
            logits, labels, self.class_weights, self.options.loss, self.options.gamma
        )
        return StepOutput(loss=loss, logits=logits.detach())
