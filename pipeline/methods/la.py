"""``la``: the logit-adjusted loss (Menon et al., "Long-tail learning via logit adjustment",
ICLR 2021, Eq. 10)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import Method, StepOutput
from pipeline.methods.kinds import LogitAdjustedOptions
from pipeline.methods.losses import log_class_prior, logit_adjusted_cross_entropy
from pipeline.models import Backbone


class LogitAdjusted(Method):
    """Trains on logits + tau log pi_y (Eq. 10); predicts with the plain logits f(x).

    Attributes:
        log_prior: ``[C]`` buffer log pi_y, pi_y = n_y / N the training label frequencies.
    """

    name: ClassVar[str] = "la"
    Options: ClassVar[type] = LogitAdjustedOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`.

        Raises:
            PipelineError: a class has no training image.
        """
        super().__init__(backbone, class_counts, options)
        log_frequencies = log_class_prior(class_counts, self.name) - math.log(
            int(class_counts.sum())
        )
        self.register_buffer("log_prior", log_frequencies)

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """Logit-adjusted loss of one batch.

        Args:
            images: ``[B, C_in, H, W]`` images.
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).

        Returns:
            Mean loss and the plain ``[B, C]`` logits (the test-time rule).
        """
        logits = self.backbone(images)
        loss = logit_adjusted_cross_entropy(logits, labels, self.log_prior, self.options.tau)
        return StepOutput(loss=loss, logits=logits.detach())
