"""The cosine-similarity classifier: logits ``s * cos(x, w_c)`` of L2-normalised features and
class weights (GML's teacher and student, Suh & Seo 2023, Eq. 6 and 7; LDAM's official
``NormedLinear``, Cao et al. 2019, with s applied by the loss)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CosineClassifier(nn.Module):
    """Logits ``s * cos(x, w_c)``: the cosine-similarity classifier (GML, Eq. 6 and 7).

    Attributes:
        weight: ``[C, D]`` class directions m_c (only their direction matters).
        scale: s = 1 / tau_s.
    """

    def __init__(self, feature_dim: int, num_classes: int, scale: float) -> None:
        """Draw the class directions uniformly in ``[-1, 1]^D`` from torch's default generator.

        Args:
            feature_dim: D, the width of the features it reads.
            num_classes: C.
            scale: s = 1 / tau_s.
        """
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim).uniform_(-1.0, 1.0))

    def forward(self, features: Tensor) -> Tensor:
        """Scaled cosine similarities ``s * m_x . m_c`` (Eq. 6 without the prior).

        Args:
            features: ``[B, D]`` pooled features x.

        Returns:
            ``[B, C]`` logits.
        """
        return self.scale * F.normalize(features, dim=1) @ F.normalize(self.weight, dim=1).T
