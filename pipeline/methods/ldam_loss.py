"""The label-distribution-aware margin (LDAM) loss (Cao et al., NeurIPS 2019, Sec. 3.2).

``L_LDAM((x, y); f) = -log( e^{z_y - Delta_y} / (e^{z_y - Delta_y} + sum_{j != y} e^{z_j}) )``
with per-class margins ``Delta_j = C / n_j^(1/4)``: rarer classes must win by a larger margin.
As in the official code, C is set so that the largest margin (the rarest class's) is
``max_margin``, and the margin-adjusted logits are multiplied by a scale s before the softmax
(the official model's logits are cosines in [-1, 1], which need it to reach a confident
softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import PipelineError


def ldam_margins(class_counts: Tensor, max_margin: float, method: str) -> Tensor:
    """Per-class margins ``Delta_j = C / n_j^(1/4)``, C such that ``max_j Delta_j = max_margin``.

    Args:
        class_counts: ``[C]`` training images per class.
        max_margin: the margin of the rarest class.
        method: the method's name, for the error message.

    Returns:
        ``[C]`` float32 margins, largest for the rarest class.

    Raises:
        PipelineError: a class has no training image (its margin would be infinite).
    """
    empty = (class_counts <= 0).nonzero().flatten().tolist()
    if empty:
        raise PipelineError(
            f"method '{method}': classes {empty} have no training images, so their LDAM margin "
            "C / n^(1/4) is infinite; give every class at least one training image"
        )
    inverse_root = class_counts.to(torch.float64).pow(-0.25)
    return (max_margin * inverse_root / inverse_root.max()).to(torch.float32)


def ldam_loss(
    logits: Tensor,
    labels: Tensor,
    margins: Tensor,
    scale: float,
    weights: Tensor | None = None,
) -> Tensor:
    """The LDAM loss of one batch, optionally class-weighted (LDAM-DRW's second stage).

    Per sample: softmax cross-entropy of ``s * (z - Delta_y e_y)``, i.e. the target logit
    lowered by its class margin, everything scaled by s. With ``weights`` the batch loss is
    ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` (the official code's ``F.cross_entropy(...,
    weight=w)``); without, the plain mean.

    Args:
        logits: ``[B, C]`` logits z (cosines in the official model).
        labels: ``[B]`` int64 class indices y.
        margins: ``[C]`` per-class margins Delta_j from :func:`ldam_margins`.
        scale: s.
        weights: ``[C]`` class weights, or None for none.

    Returns:
        Scalar loss.
    """
    target_margin = margins.to(logits.dtype)[labels]
    shifted = logits - F.one_hot(labels, logits.shape[1]).to(logits.dtype) * target_margin[:, None]
    weight = None if weights is None else weights.to(logits.dtype)
    return F.cross_entropy(scale * shifted, labels, weight=weight)
