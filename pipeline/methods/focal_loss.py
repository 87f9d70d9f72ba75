"""The focal loss (Lin et al., ICCV 2017, Eq. 4 and 5) on softmax probabilities.

``FL(p_t) = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the softmax probability of the
target class: the factor ``(1 - p_t)^gamma`` shrinks the loss of well-classified samples so
that training focuses on hard ones. The paper states it for the sigmoid of detection; the
multi-class softmax form here is the one long-tail code uses (LDAM's official FocalLoss, and
the ``focal`` base loss of the class-balanced loss, :mod:`pipeline.methods.cb_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def focal_terms(logits: Tensor, labels: Tensor, gamma: float) -> Tensor:
    """Per-sample focal loss ``-(1 - p_t)^gamma log p_t`` (Eq. 4), without alpha.

    Args:
        logits: ``[B, C]`` logits.
        labels: ``[B]`` int64 class indices y.
        gamma: the focusing exponent (0: per-sample cross-entropy).

    Returns:
        ``[B]`` losses.
    """
    log_p_t = F.log_softmax(logits, dim=-1).gather(1, labels.unsqueeze(1)).squeeze(1)
    # 1 - p_t as -expm1(log p_t) keeps its precision for confident samples; the clamp keeps
    # the gradient of x^gamma finite (gamma < 1) when p_t rounds to exactly 1.
    one_minus_p_t = (-torch.expm1(log_p_t)).clamp(min=torch.finfo(log_p_t.dtype).tiny)
    return -one_minus_p_t.pow(gamma) * log_p_t


def focal_loss(
    logits: Tensor, labels: Tensor, gamma: float, alpha: Tensor | None = None
) -> Tensor:
    """The focal loss averaged over the batch: Eq. 4, or Eq. 5 when ``alpha`` is given.

    Args:
        logits: ``[B, C]`` logits.
        labels: ``[B]`` int64 class indices y.
        gamma: the focusing exponent.
        alpha: ``[C]`` per-class weights alpha_t of Eq. 5, or None for none.

    Returns:
        Scalar ``mean_i alpha_{y_i} FL_i`` (alpha = 1 when not given).
    """
    terms = focal_terms(logits, labels, gamma)
    if alpha is not None:
        terms = alpha.to(terms.dtype)[labels] * terms
    return terms.mean()
