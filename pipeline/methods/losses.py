"""Losses shared by several methods (Balanced Softmax is reused by BSCE, BIB and MBIB)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import PipelineError


def log_class_prior(class_counts: Tensor, method: str) -> Tensor:
    """log n_c for every class, refusing classes without training images.

    Args:
        class_counts: ``[C]`` training images per class.
        method: the method's name, for the error message.

    Returns:
        ``[C]`` float32 log counts.

    Raises:
        PipelineError: a class has no training image (its log count would be -inf).
    """
    empty = (class_counts <= 0).nonzero().flatten().tolist()
    if empty:
        raise PipelineError(
            f"method '{method}': classes {empty} have no training images, so log n_c is -inf; "
            "give every class at least one training image (check the long-tail profile)"
        )
    return class_counts.to(torch.float32).log()


def balanced_softmax_cross_entropy(logits: Tensor, labels: Tensor, log_prior: Tensor) -> Tensor:
    """Balanced Softmax loss (Ren et al. 2020, Eq. 4), averaged over the batch.

    ``-log( n_y exp(eta_y) / sum_j n_j exp(eta_j) )``, i.e. cross-entropy on the logits
    shifted by the log class counts, so the shift absorbs the training label prior and the
    plain logits estimate the balanced posterior.

    Args:
        logits: ``[B, C]`` unshifted logits eta.
        labels: ``[B]`` int64 class indices y.
        log_prior: ``[C]`` log n_j (any additive constant cancels).

    Returns:
        Scalar mean loss.
    """
    return F.cross_entropy(logits + log_prior, labels)


def logit_adjusted_cross_entropy(
    logits: Tensor, labels: Tensor, log_prior: Tensor, tau: float
) -> Tensor:
    """The logit-adjusted loss (Menon et al., ICLR 2021, Eq. 10), averaged over the batch.

    ``-log( e^{f_y(x) + tau log pi_y} / sum_y' e^{f_y'(x) + tau log pi_y'} )``: softmax
    cross-entropy on the logits shifted by tau times the log label prior, so that the plain
    logits f(x) estimate the balanced posterior. With tau = 1 this is the Balanced Softmax
    loss of :func:`balanced_softmax_cross_entropy` (log n_y and log pi_y differ by a constant,
    which cancels); with tau = 0 it is plain cross-entropy.

    Args:
        logits: ``[B, C]`` unshifted logits f(x).
        labels: ``[B]`` int64 class indices y.
        log_prior: ``[C]`` log pi_y (any additive constant cancels).
        tau: the scale of the adjustment.

    Returns:
        Scalar mean loss.
    """
    return F.cross_entropy(logits + tau * log_prior.to(logits.dtype), labels)
