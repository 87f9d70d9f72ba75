"""The class-balanced loss (Cui et al., CVPR 2019): a base loss weighted by effective numbers.

The effective number of n samples is ``E_n = (1 - beta^n) / (1 - beta)`` (Sec. 3); the
class-balanced loss weighs the loss of a sample of class y by ``1 / E_{n_y}`` =
``(1 - beta) / (1 - beta^{n_y})``, the weights normalised so that they sum to the number of
classes C (Sec. 4). The same weights re-weight LDAM after its deferral point
(:mod:`pipeline.methods.ldam_drw`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import PipelineError
from pipeline.methods.focal_loss import focal_terms


def effective_number_weights(class_counts: Tensor, beta: float, method: str) -> Tensor:
    """Class weights ``w_c = C (1 - beta) / (1 - beta^{n_c})``, normalised to sum to C.

    Args:
        class_counts: ``[C]`` training images per class.
        beta: in [0, 1); 0 gives uniform weights, beta -> 1 inverse-frequency ones.
        method: the method's name, for the error message.

    Returns:
        ``[C]`` float32 weights that sum to C.

    Raises:
        PipelineError: a class has no training image (its effective number is 0).
    """
    empty = (class_counts <= 0).nonzero().flatten().tolist()
    if empty:
        raise PipelineError(
            f"method '{method}': classes {empty} have no training images, so their effective "
            "number is 0; give every class at least one training image"
        )
    counts = class_counts.to(torch.float64)
    # 1 - beta^n as -expm1(n log beta): beta^n is within rounding of 1 for beta = 0.9999 and
    # small n, where the plain difference would lose most of its digits.
    effective = -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=torch.float64)))
    unnormalised = (1.0 - beta) / effective
    num_classes = class_counts.numel()
    return (num_classes * unnormalised / unnormalised.sum()).to(torch.float32)


def class_balanced_loss(
    logits: Tensor, labels: Tensor, weights: Tensor, base: str, gamma: float = 0.0
) -> Tensor:
    """``CB(p, y) = w_y L(p, y)`` averaged over the batch (Cui et al. 2019, Sec. 4).

    The mean is over samples (``sum_i w_{y_i} L_i / B``), as the official code reduces it, so
    a batch of head samples weighs less than one of tail samples.

    Args:
        logits: ``[B, C]`` logits.
        labels: ``[B]`` int64 class indices y.
        weights: ``[C]`` class weights from :func:`effective_number_weights`.
        base: "softmax" (softmax cross-entropy) or "focal" (the focal loss with ``gamma``).
        gamma: the focusing exponent of the focal base loss.

    Returns:
        Scalar loss.

    Raises:
        ValueError: an unknown base loss.
    """
    if base == "softmax":
        terms = F.cross_entropy(logits, labels, reduction="none")
    elif base == "focal":
        terms = focal_terms(logits, labels, gamma)
    else:
        raise ValueError(f"unknown base loss '{base}'; use softmax or focal")
    return (weights.to(terms.dtype)[labels] * terms).mean()
