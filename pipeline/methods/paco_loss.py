"""The Parametric Contrastive loss of PaCo (Cui et al., ICCV 2021), in its official form.

For a query i of class y_i with projection q_i and centre logits c_i (the linear classifier on
the pooled feature, plus log pi during training), the contrast set holds the C class centres
and the sample keys k_j of A(i) (batch keys and queue, minus what the self-contrast mask
removes). With scores

    s_i(c)   = c_i,c                 for every class centre c (NOT divided by T),
    s_i(j)   = q_i . k_j / T         for every sample j in A(i),

    log p_i(a) = s_i(a) - log( sum_c exp s_i(c) + sum_{j in A(i)} exp s_i(j) ),

and weights w_i(c) = beta [c = y_i] (beta = 1 in the paper) on the centres and
w_i(j) = alpha [y_j = y_i] on the samples (the positives P(i)), the loss is

    L_i = -(T / T_base) * sum_a w_i(a) log p_i(a) / sum_a w_i(a),     L = mean_i L_i.

Normalising by the sum of the weights and scaling by T / T_base follow the official loss; the
centre term is PaCo's supervised (Balanced-Softmax-like, through + log pi) term, so nothing
else is added to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def paco_loss(
    centre_logits: Tensor,
    labels: Tensor,
    queries: Tensor,
    contrast_keys: Tensor,
    contrast_labels: Tensor,
    contrast_mask: Tensor,
    *,
    alpha: float,
    beta: float,
    temperature: float,
    base_temperature: float,
) -> Tensor:
    """The PaCo loss of a batch (module docstring), averaged over the queries.

    Args:
        centre_logits: ``[B, C]`` class-centre scores c_i (classifier logits + log pi).
        labels: ``[B]`` int64 classes y_i of the queries.
        queries: ``[B, D]`` L2-normalised query projections q_i.
        contrast_keys: ``[N, D]`` L2-normalised sample keys k_j (no gradient expected).
        contrast_labels: ``[N]`` int64 classes y_j of the keys.
        contrast_mask: ``[B, N]`` bool, True where key j belongs to A(i); False removes it
            from numerator and denominator alike (empty queue slots, self-contrast).
        alpha: weight of each same-class sample.
        beta: weight of the query's own class centre.
        temperature: T of the sample scores.
        base_temperature: T_base; the loss is scaled by T / T_base.

    Returns:
        Scalar mean loss.
    """
    sample_scores = queries @ contrast_keys.T / temperature
    scores = torch.cat((centre_logits, sample_scores), dim=1)
    centre_mask = torch.ones_like(centre_logits, dtype=torch.bool)
    included = torch.cat((centre_mask, contrast_mask), dim=1)
    log_normaliser = torch.logsumexp(scores.masked_fill(~included, float("-inf")), dim=1)
    log_probability = scores - log_normaliser[:, None]
    same_class = (labels[:, None] == contrast_labels[None, :]) & contrast_mask
    centre_weights = beta * F.one_hot(labels, centre_logits.shape[1]).to(scores.dtype)
    weights = torch.cat((centre_weights, alpha * same_class.to(scores.dtype)), dim=1)
    mean_positive_log_probability = (weights * log_probability).sum(dim=1) / weights.sum(dim=1)
    return -(temperature / base_temperature) * mean_positive_log_probability.mean()
