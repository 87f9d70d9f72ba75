"""``focal``: the focal loss (Lin et al., ICCV 2017, Eq. 4; Eq. 5 with per-class alpha)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from pipeline.errors import PipelineError
from pipeline.methods.base import LogitLoss
from pipeline.methods.focal_loss import focal_loss
from pipeline.methods.kinds import FocalOptions
from pipeline.models import Backbone


class Focal(LogitLoss):
    """Minimises ``-alpha_y (1 - p_y)^gamma log p_y`` of the linear head's softmax.

    Attributes:
        alpha: ``[C]`` buffer of the per-class alpha, or None when no alpha is given.
    """

    name: ClassVar[str] = "focal"
    Options: ClassVar[type] = FocalOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`.

        Raises:
            PipelineError: ``options.alpha`` is given but not one weight per class.
        """
        super().__init__(backbone, class_counts, options)
        alpha = None
        if options.alpha:
            if len(options.alpha) != backbone.num_classes:
                raise PipelineError(
                    f"method '{self.name}': options.alpha lists {len(options.alpha)} weights "
                    f"but there are {backbone.num_classes} classes; give one per class or none"
                )
            alpha = torch.tensor(options.alpha, dtype=torch.float32)
        self.register_buffer("alpha", alpha)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean focal loss."""
        return focal_loss(logits, labels, self.options.gamma, self.alpha)
