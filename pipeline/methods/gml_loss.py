"""The Gaussian Mixture Likelihood loss (Eq. 3, 4, 10 of Suh & Seo, ICML 2023) and its KD term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_log_likelihoods(
    similarity: Tensor, key_class: Tensor, key_mask: Tensor, num_classes: int
) -> Tensor:
    """log s(x|c) of Eq. 3: log-mean-exp of the scaled similarities to class c's keys.

    ``log s(x|c) = log( (1/|Z_c|) sum_{z in Z_c} exp(z_x . z / tau_g) )``, where Z_c holds the
    keys of class c that ``key_mask`` lets through for that query. Each class is stabilised
    by its own maximum, so no class underflows whatever tau_g.

    Args:
        similarity: ``[B, M]`` ``z_x . z_k / tau_g`` of every query and key.
        key_class: ``[M]`` int64 class of each key.
        key_mask: ``[B, M]`` bool, True where a key counts for a query.
        num_classes: C.

    Returns:
        ``[B, C]`` log-likelihoods; ``-inf`` where a query has no key of a class.
    """
    batch = similarity.shape[0]
    masked = similarity.masked_fill(~key_mask, float("-inf"))
    class_max = torch.full(
        (batch, num_classes), float("-inf"), dtype=similarity.dtype, device=similarity.device
    ).scatter_reduce(1, key_class.expand(batch, -1), masked.detach(), "amax")
    class_max = torch.where(torch.isfinite(class_max), class_max, torch.zeros_like(class_max))
    # Shifting each entry before exp (not after) keeps masked entries at exp(-inf) = 0 and
    # their gradients at 0 instead of NaN.
    shifted = torch.where(key_mask, similarity - class_max[:, key_class], float("-inf"))
    membership = F.one_hot(key_class, num_classes).to(similarity.dtype)
    sums = shifted.exp() @ membership
    sizes = key_mask.to(similarity.dtype) @ membership
    present = sizes > 0
    ones = torch.ones_like(sums)
    log_mean = (
        torch.where(present, sums, ones).log() - torch.where(present, sizes, ones).log()
    ) + class_max
    return log_mean.masked_fill(~present, float("-inf"))


def gml_loss(
    similarity: Tensor,
    key_class: Tensor,
    key_mask: Tensor,
    labels: Tensor,
    log_prior: Tensor,
    prior_weight: float = 1.0,
) -> Tensor:
    """``L_GML`` of Eq. 4, with the prior weight alpha of Eq. 10, averaged over queries.

    ``-log( exp(log s(x|y) + alpha eta_y) / sum_c exp(log s(x|c) + alpha eta_c) )`` with
    s(x|c) the Gaussian-mixture likelihood of Eq. 3 and eta_c = log p(c). Classes without a
    key for a query drop out of its denominator; a query without a key of its own class has
    no defined loss and is left out of the mean (the loss is 0 if no query has one).

    Args:
        similarity: ``[B, M]`` ``z_x . z_k / tau_g``.
        key_class: ``[M]`` int64 class of each key.
        key_mask: ``[B, M]`` bool, True where a key counts for a query.
        labels: ``[B]`` int64 class y of each query.
        log_prior: ``[C]`` eta_c = log p(c).
        prior_weight: alpha of Eq. 10 (1 gives Eq. 4).

    Returns:
        Scalar mean loss.
    """
    log_likelihood = class_log_likelihoods(similarity, key_class, key_mask, log_prior.numel())
    logits = log_likelihood + prior_weight * log_prior
    defined = torch.isfinite(log_likelihood.gather(1, labels[:, None])).flatten()
    # Rows without their own class are zeroed before the cross-entropy so that neither their
    # value nor their gradient can turn into NaN.
    safe_logits = torch.where(defined[:, None], logits, torch.zeros_like(logits))
    per_query = F.cross_entropy(safe_logits, labels, reduction="none")
    weights = defined.to(per_query.dtype)
    return (per_query * weights).sum() / weights.sum().clamp(min=1.0)


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s knowledge-distillation term, ``T^2 KL(p_t || p_s)`` averaged over the batch.

    ``p = softmax(logits / T)`` for both networks; the T^2 factor keeps the gradient scale
    independent of T.

    Args:
        student_logits: ``[B, C]`` logits of the network being trained.
        teacher_logits: ``[B, C]`` target logits (no gradient flows into them).
        temperature: T.

    Returns:
        Scalar loss.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2
