"""The interface every backbone shares, in timm's vocabulary (features, head, stages)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn


def global_average_pool(feature_map: Tensor) -> Tensor:
    """Average a feature map over its spatial positions.

    Args:
        feature_map: ``[B, D, h, w]`` activations.

    Returns:
        ``[B, D]`` pooled features.
    """
    return feature_map.mean(dim=(2, 3))


class Backbone(nn.Module, ABC):
    """An image network split into three stages, a global average pool and a linear head.

    Subclasses build ``fc`` and implement :meth:`forward_stage_maps`; everything else
    (``forward_features``, ``forward_head``, ``forward``, ``forward_stages``) follows from it.

    Attributes:
        feature_dim: D, the width of the pooled final features.
        stage_dims: widths of the pooled outputs of the three stages (the last is D).
        num_classes: C, the width of the head's logits.
        fc: the plain linear head ``D -> C``.
    """

    feature_dim: int
    stage_dims: tuple[int, int, int]
    num_classes: int
    fc: nn.Linear

    @abstractmethod
    def forward_stage_maps(self, x: Tensor) -> list[Tensor]:
        """Unpooled outputs of the three stages.

        Args:
            x: ``[B, C_in, H, W]`` images.

        Returns:
            Three maps ``[B, stage_dims[i], h_i, w_i]``; the last is the final feature map.
        """

    def forward_features(self, x: Tensor) -> Tensor:
        """The unpooled final feature map.

        Args:
            x: ``[B, C_in, H, W]`` images.

        Returns:
            ``[B, D, h, w]`` activations of the last stage.
        """
        return self.forward_stage_maps(x)[-1]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool a final feature map and, unless ``pre_logits``, apply the linear head.

        Args:
            x: ``[B, D, h, w]`` output of :meth:`forward_features`.
            pre_logits: return the pooled features instead of the logits.

        Returns:
            ``[B, D]`` pooled features if ``pre_logits`` else ``[B, C]`` logits.
        """
        pooled = global_average_pool(x)
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the plain linear head.

        Args:
            x: ``[B, C_in, H, W]`` images.

        Returns:
            ``[B, C]`` logits.
        """
        return self.forward_head(self.forward_features(x))

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Pooled outputs of the three stages (multi-stage methods such as MBIB read these).

        Args:
            x: ``[B, C_in, H, W]`` images.

        Returns:
            Three tensors ``[B, stage_dims[i]]``; the last equals the pooled final features.
        """
        return [global_average_pool(stage_map) for stage_map in self.forward_stage_maps(x)]
