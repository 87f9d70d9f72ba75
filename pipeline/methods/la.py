"""``la``: the logit-adjusted loss (Menon et al., "Long-tail learning via logit adjustment",
ICLR 2021, Eq. 10)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import LogitLoss
from pipeline.methods.kinds import LogitAdjustedOptions
from pipeline.methods.losses import log_class_prior, logit_adjusted_cross_entropy
from pipeline.models import Backbone


class LogitAdjusted(LogitLoss):
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

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean logit-adjusted loss (Eq. 10); the plain logits are the test-time rule."""
        return logit_adjusted_cross_entropy(logits, labels, self.log_prior, self.options.tau)
