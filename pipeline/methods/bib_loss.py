"""The losses of BIB and MBIB (Lan et al., TMLR 2025, Eq. 7, 9, 11 and Appendix J).

``Loss_BIB(v, z)`` (Eq. 9) is two class-weighted Balanced Softmax cross-entropies, one on the
classifier f(v) of an observation v and one on the classifier g(z) of the bottleneck z, plus
``beta`` times a variational self-distillation KL from q(y|v) (teacher, detached) to q(y|z)
with class-dependent temperatures. ``Loss_MBIB`` (Eq. 11) weighs one BIB per network exit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def class_weights(class_counts: Tensor, m: float) -> Tensor:
    """Class re-balancing weights of Eq. 7: ``w_c = K (1/n_c)^m / sum_j (1/n_j)^m``.

    Eq. 7 is written with class frequencies d_c = n_c / N; N cancels in the ratio, so counts
    give the same weights (Appendix J computes them from counts too).

    Args:
        class_counts: ``[K]`` training images per class, all positive.
        m: the exponent (0.1 in the paper; 0 gives uniform weights).

    Returns:
        ``[K]`` float32 weights that sum to K.
    """
    # (1/n)^m = exp(-m log n) in float64 keeps the normalisation exact for large counts.
    unnormalised = torch.exp(-m * class_counts.to(torch.float64).log())
    num_classes = class_counts.numel()
    return (num_classes * unnormalised / unnormalised.sum()).to(torch.float32)


def class_temperatures(class_counts: Tensor, gamma: float) -> Tensor:
    """Self-distillation temperatures of Sec. 3.2: ``T_c = (n_max / n_c)^gamma``.

    Args:
        class_counts: ``[K]`` training images per class, all positive.
        gamma: the exponent (0 on CIFAR-100-LT, i.e. every T_c = 1; 0.5 on ImageNet-LT).

    Returns:
        ``[K]`` float32 temperatures, 1 for the most frequent class and larger for rarer ones.
    """
    counts = class_counts.to(torch.float64)
    return (counts.max() / counts).pow(gamma).to(torch.float32)


def weighted_balanced_softmax_cross_entropy(
    logits: Tensor, labels: Tensor, log_prior: Tensor, weights: Tensor
) -> Tensor:
    """BSCLoss of Eq. 5/6 with the class weights of Eq. 7 (``Loss_1`` / ``Loss_2``).

    Per sample ``l_i = -log(n_{y_i} e^{eta_{i,y_i}} / sum_j n_j e^{eta_{i,j}})`` (Eq. 4); the
    batch loss is ``sum_i w_{y_i} l_i / sum_i w_{y_i}``, the weighted mean that Appendix J
    computes with ``F.cross_entropy(..., weight=weights)``.

    Args:
        logits: ``[B, K]`` unshifted logits eta of one classifier.
        labels: ``[B]`` int64 class indices y.
        log_prior: ``[K]`` log n_c.
        weights: ``[K]`` class weights w_c of Eq. 7.

    Returns:
        Scalar loss.
    """
    return F.cross_entropy(
        logits + log_prior.to(logits.dtype), labels, weight=weights.to(logits.dtype)
    )


def variational_self_distillation(
    teacher_logits: Tensor, student_logits: Tensor, temperatures: Tensor
) -> Tensor:
    """VSDLoss of Eq. 8 (``Loss_3``): ``KL(q(y|v) || q(y|z))``, averaged over the batch.

    ``q(y_c|v) = e^{f_c(v)/T_c} / sum_j e^{f_j(v)/T_j}`` and likewise q(y|z) with g(z): each
    logit column c is divided by its own class temperature T_c (Sec. 3.2, and the ``[1, K]``
    temperature row of Appendix J), not by the temperature of the sample's target class.
    The teacher q(y|v) is detached, as Sec. 3.2 prescribes, so no gradient reaches f(v).

    Args:
        teacher_logits: ``[B, K]`` logits f(v) of the observation's classifier.
        student_logits: ``[B, K]`` logits g(z) of the bottleneck's classifier.
        temperatures: ``[K]`` class temperatures T_c.

    Returns:
        Scalar ``mean_i sum_c q(c|v_i) (log q(c|v_i) - log q(c|z_i))``.
    """
    temperatures = temperatures.to(student_logits.dtype)
    teacher_log_probs = F.log_softmax(teacher_logits.detach() / temperatures, dim=-1)
    student_log_probs = F.log_softmax(student_logits / temperatures, dim=-1)
    kl_per_sample = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)
    return kl_per_sample.mean()


def bib_loss(
    observation_logits: Tensor,
    bottleneck_logits: Tensor,
    labels: Tensor,
    *,
    log_prior: Tensor,
    weights: Tensor,
    temperatures: Tensor,
    beta: float,
) -> Tensor:
    """``Loss_BIB(v, z) = Loss_1 + Loss_2 + beta * Loss_3`` (Eq. 9, Appendix J).

    Args:
        observation_logits: ``[B, K]`` logits f(v) of the classifier on the observation v.
        bottleneck_logits: ``[B, K]`` logits g(z) of the classifier on the bottleneck z.
        labels: ``[B]`` int64 class indices.
        log_prior: ``[K]`` log n_c.
        weights: ``[K]`` class weights of Eq. 7.
        temperatures: ``[K]`` self-distillation temperatures T_c.
        beta: weight of the self-distillation term.

    Returns:
        Scalar loss.
    """
    observation_term = weighted_balanced_softmax_cross_entropy(
        observation_logits, labels, log_prior, weights
    )
    bottleneck_term = weighted_balanced_softmax_cross_entropy(
        bottleneck_logits, labels, log_prior, weights
    )
    distillation_term = variational_self_distillation(
        observation_logits, bottleneck_logits, temperatures
    )
    return observation_term + bottleneck_term + beta * distillation_term


def mbib_loss(
    exit_logits: Sequence[Tensor],
    exit_weights: Sequence[float],
    bottleneck_logits: Tensor,
    labels: Tensor,
    *,
    log_prior: Tensor,
    weights: Tensor,
    temperatures: Tensor,
    beta: float,
) -> Tensor:
    """``Loss_MBIB = a BIB(v1, z) + b BIB(v2, z) + BIB(v3, z)`` (Eq. 11).

    Each exit i contributes ``exit_weights[i] * Loss_BIB(v_i, z)``, every BIB sharing the
    bottleneck logits g(z); so g(z)'s BSCLoss counts ``sum(exit_weights)`` times, as in Eq. 11.

    Args:
        exit_logits: per exit, ``[B, K]`` logits of its classifier (h(v1), u(v2), f(v3)).
        exit_weights: per exit, its weight (a, b, 1).
        bottleneck_logits: ``[B, K]`` logits g(z).
        labels: ``[B]`` int64 class indices.
        log_prior: ``[K]`` log n_c.
        weights: ``[K]`` class weights of Eq. 7.
        temperatures: ``[K]`` self-distillation temperatures T_c.
        beta: weight of the self-distillation term of every BIB.

    Returns:
        Scalar loss.

    Raises:
        ValueError: ``exit_logits`` and ``exit_weights`` differ in length, or are empty.
    """
    if len(exit_logits) != len(exit_weights) or not exit_logits:
        raise ValueError(
            f"need one weight per exit and at least one exit, got {len(exit_logits)} exits "
            f"and {len(exit_weights)} weights"
        )
    terms = [
        weight
        * bib_loss(
            logits,
            bottleneck_logits,
            labels,
            log_prior=log_prior,
            weights=weights,
            temperatures=temperatures,
            beta=beta,
        )
        for logits, weight in zip(exit_logits, exit_weights, strict=True)
    ]
    return torch.stack(terms).sum()
