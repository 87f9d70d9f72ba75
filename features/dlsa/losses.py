"""The losses of a DLSA flow filter (Xu et al., ECCV 2022, Sec. 3.3, Eq. 6, 7, 9, 10).

L_total = L_MLE + lambda_bal L_bal + lambda_pure L_pure (Eq. 11):
    weighted_mle_loss   Eq. 6-7: negative log-likelihood, tail rows weighted up.
    ClusterBalance      Eq. 9 with the bias-corrected momentum estimate of P(h | X).
    purity_pairs        draws the pairs of rows of two distinct classes that
    purity_loss         Eq. 10 pushes apart in cluster assignment.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from features.errors import FeaturesError


def eq6_weights(class_counts: torch.Tensor, q: float) -> torch.Tensor:
    """omega(i) = n_i^(-q) / sum_j n_j^(-q) (Eq. 6): weights that sum to 1 over the classes.

    Classes without rows are left out of the sum (and get weight 0): they never occur.

    Args:
        class_counts: [C], n_i, training rows per class.
        q: Exponent q >= 0; q = 0 weighs every class 1 / C.

    Returns:
        float64 [C].
    """
    counts = _checked_counts(class_counts, q)
    present = counts > 0
    raw = torch.where(present, counts.clamp(min=1.0) ** (-q), torch.zeros_like(counts))
    return raw / raw.sum()


def mle_class_weights(class_counts: torch.Tensor, q: float) -> torch.Tensor:
    """Per-class weights proportional to n_c^(-q) (Eq. 6) that average to 1 over the rows.

    w_c = n_c^(-q) * N / sum_j n_j^(1-q), so sum_c n_c w_c = N; a class without rows gets the
    weight it would have with one row (it never occurs in a batch anyway).

    Args:
        class_counts: [C], n_c, training rows per class.
        q: Exponent q >= 0; q = 0 gives every row weight 1 (plain MLE).

    Returns:
        float64 [C].
    """
    counts = _checked_counts(class_counts, q)
    raw = counts.clamp(min=1.0) ** (-q)
    return raw * counts.sum() / (counts * raw).sum()


def _checked_counts(class_counts: torch.Tensor, q: float) -> torch.Tensor:
    counts = class_counts.detach().to("cpu", torch.float64)
    if counts.ndim != 1 or counts.sum() <= 0 or bool((counts < 0).any()):
        raise FeaturesError(
            f"class_counts: expected non-negative [C] counts with at least one row, got "
            f"shape {tuple(counts.shape)}"
        )
    if q < 0:
        raise FeaturesError(f"weighted MLE exponent q must be >= 0, got {q}")
    return counts


def weighted_mle_loss(
    log_likelihood: torch.Tensor,
    labels: torch.Tensor,
    class_counts: torch.Tensor,
    q: float,
    form: str = "eq7",
) -> torch.Tensor:
    """Weighted maximum-likelihood loss (Eq. 7 with the class weights of Eq. 6).

    "eq7", as printed: L = -sum_b omega(y_b) log L(theta; x_b), omega from `eq6_weights`
    (summing to 1 over classes), summed over the batch. Its scale grows with the batch's
    share of the rows and falls with the number of classes; the lambdas of Eq. 11 are set
    on this scale.
    "mean": L = -(1/B) sum_b w_{y_b} log L(theta; x_b), w from `mle_class_weights` (averaging
    1 over the rows): a weighted mean negative log-likelihood, the same for any batch size.
    Both give the classes the same relative weights; they differ by the constant factor
    B sum_j n_j^(1-q) / (N sum_j n_j^(-q)).

    Args:
        log_likelihood: float [B], log P(x_b) from the flow.
        labels: int64 [B], classes y_b.
        class_counts: [C], n_c of the bank's training rows.
        q: Exponent of Eq. 6; 0 gives the plain MLE (ablation "weighted_mle off").
        form: "eq7" or "mean".

    Returns:
        Scalar loss.
    """
    if form == "eq7":
        weights = eq6_weights(class_counts, q).to(log_likelihood.device, log_likelihood.dtype)
        return -(weights[labels] * log_likelihood).sum()
    if form != "mean":
        raise FeaturesError(f"unknown MLE form {form!r}; use 'eq7' or 'mean'")
    weights = mle_class_weights(class_counts, q).to(log_likelihood.device, log_likelihood.dtype)
    return -(weights[labels] * log_likelihood).mean()


def expected_batch_weight(
    class_counts: torch.Tensor, q: float, form: str, sampler: str, batch_size: int
) -> float:
    """m: the expected sum over a batch of the weights L_MLE puts on its rows' log-likelihoods.

    "eq7": B E[omega(y)], omega of Eq. 6 (summing to 1 over the classes); "mean": E[w(y)]
    (the loss is a mean: one unit per batch when rows are drawn as they come). E is over the
    rows the sampler draws: every row alike ("instance": E[omega] = sum_c n_c omega_c / N) or
    a uniform class first ("class_uniform": the mean of omega_c over the classes with rows).
    SGD on Eq. 11 at lr / m takes the same step per unit of likelihood weight on any bank.

    Args:
        class_counts: [C], n_c.
        q: Exponent of Eq. 6 (0 for the plain MLE).
        form: "eq7" or "mean".
        sampler: "instance" or "class_uniform".
        batch_size: B.

    Returns:
        m > 0.
    """
    counts = _checked_counts(class_counts, q)
    weights = eq6_weights(counts, q) if form == "eq7" else mle_class_weights(counts, q)
    if sampler == "class_uniform":
        mean_weight = float(weights[counts > 0].mean())
    else:
        mean_weight = float((counts * weights).sum() / counts.sum())
    return mean_weight * (batch_size if form == "eq7" else 1.0)


def flow_objective(
    mle: torch.Tensor,
    balance: torch.Tensor | None,
    purity: torch.Tensor | None,
    lambda_bal: float,
    lambda_pure: float,
) -> torch.Tensor:
    """L_total = L_MLE + lambda_bal L_bal + lambda_pure L_pure (Eq. 11); a loss switched off
    (None) is left out."""
    total = mle
    if balance is not None:
        total = total + lambda_bal * balance
    if purity is not None:
        total = total + lambda_pure * purity
    return total


def kl_to_uniform(probs: torch.Tensor) -> torch.Tensor:
    """KL(p || U_K) = sum_k p_k log p_k + log K (DLSA supplement, Eq. 1).

    Args:
        probs: float [K], a distribution.

    Returns:
        Scalar, >= 0.
    """
    tiny = torch.finfo(probs.dtype).tiny
    # Clamped inside the log only: p log p -> 0 as p -> 0, and the gradient stays finite.
    return (probs * torch.log(probs.clamp(min=tiny))).sum() + math.log(len(probs))


class ClusterBalance:
    """Cluster balancedness loss with a bias-corrected momentum estimate (Eq. 8-9, Sec. 3.3).

    At step t the batch estimate p_hat_t = mean_b P(k | x_b) (Eq. 8) is smoothed as
    p~_t = eta p~_{t-1} + (1 - eta) p_hat_t with p~_0 = 0, and the loss is
    KL(p~_t / (1 - eta^t) || uniform), which equals Eq. 9 (negative entropy) plus log K.

    Gradient: only the current batch's p_hat_t carries gradient (through the (1 - eta)
    term); p~_{t-1} is a detached running value, so no step back-propagates into earlier
    batches' graphs. State (step count and p~) is kept in float64 and is state_dict-able so
    that an interrupted training resumes exactly.

    Args:
        num_clusters: K.
        eta: Decay factor eta in [0, 1).
    """

    def __init__(self, num_clusters: int, eta: float) -> None:
        if num_clusters < 1 or not 0 <= eta < 1:
            raise FeaturesError(
                f"ClusterBalance needs num_clusters >= 1 and eta in [0, 1), got "
                f"{num_clusters} and {eta}"
            )
        self.eta = eta
        self.step = 0
        self.running = torch.zeros(num_clusters, dtype=torch.float64)

    def update(self, batch_mean: torch.Tensor) -> torch.Tensor:
        """Folds one batch's estimate into the running one; returns the corrected estimate.

        Args:
            batch_mean: float [K], p_hat_t (may carry gradient).

        Returns:
            float64 [K], p~_t / (1 - eta^t), carrying batch_mean's gradient.
        """
        if batch_mean.shape != self.running.shape:
            raise FeaturesError(
                f"ClusterBalance: expected a batch mean of shape {tuple(self.running.shape)}, "
                f"got {tuple(batch_mean.shape)}"
            )
        self.step += 1
        running = self.running.to(batch_mean.device)
        smoothed = self.eta * running + (1.0 - self.eta) * batch_mean.to(torch.float64)
        self.running = smoothed.detach()
        return smoothed / (1.0 - self.eta**self.step)

    def __call__(self, log_posterior: torch.Tensor) -> torch.Tensor:
        """The balancedness loss of a batch; advances the running estimate by one step.

        Args:
            log_posterior: float [B, K], log P(k | x_b).

        Returns:
            Scalar loss in log_posterior's dtype.
        """
        corrected = self.update(log_posterior.exp().mean(dim=0))
        return kl_to_uniform(corrected).to(log_posterior.dtype)

    def state_dict(self) -> dict[str, Any]:
        """Step count and running estimate (on CPU)."""
        return {"step": self.step, "running": self.running.detach().to("cpu").clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what `state_dict` returned."""
        running = state["running"]
        if running.shape != self.running.shape:
            raise FeaturesError(
                f"ClusterBalance state has {tuple(running.shape)} clusters, expected "
                f"{tuple(self.running.shape)}; the checkpoint belongs to another filter"
            )
        self.step = int(state["step"])
        self.running = running.to(torch.float64).clone()


def purity_pairs(
    labels: torch.Tensor, generator: torch.Generator, num_pairs: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draws pairs of rows of two distinct classes for the purity loss (Sec. 3.3).

    Each pair draws a class uniformly over the classes present in the batch (not over rows:
    the paper finds equal class probability works best), a second class uniformly over the
    other present classes, then one row of each class uniformly. So every present class is
    equally frequent as first and as second member, however imbalanced the batch.

    Args:
        labels: int [B], classes of the batch rows.
        generator: CPU generator the draws come from.
        num_pairs: P; B when None.

    Returns:
        (i, j), int64 [P] each, row indices on labels' device with labels[i] != labels[j];
        both empty when the batch holds fewer than two classes.
    """
    device = labels.device
    labels = labels.detach().to("cpu", torch.int64)
    num_pairs = len(labels) if num_pairs is None else num_pairs
    rows_by_class = torch.argsort(labels, stable=True)
    classes, counts = torch.unique_consecutive(labels[rows_by_class], return_counts=True)
    if len(classes) < 2 or num_pairs < 1:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty.clone()
    starts = torch.cumsum(counts, 0) - counts
    first = torch.randint(len(classes), (num_pairs,), generator=generator)
    # Shift by 1 .. m-1 (uniform) modulo m: uniform over the m - 1 classes other than first.
    second = (first + 1 + torch.randint(len(classes) - 1, (num_pairs,), generator=generator)) % len(
        classes
    )

    def row_of(drawn: torch.Tensor) -> torch.Tensor:
        offsets = (
            torch.rand(num_pairs, generator=generator, dtype=torch.float64) * counts[drawn]
        ).long()
        offsets = torch.minimum(offsets, counts[drawn] - 1)
        return rows_by_class[starts[drawn] + offsets]

    return row_of(first).to(device), row_of(second).to(device)


def purity_loss(log_posterior: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """Purity loss (Eq. 10), averaged over pairs.

    L_pure(x_i, x_j) = sum_k P(k | x_i) log P(k | x_j) = -H(P(.|x_i), P(.|x_j)), with
    P(k | x_i) detached (a fixed target). It is minimised as is: minimising the negative
    cross-entropy raises the cross-entropy of the two rows' cluster posteriors, i.e. pushes
    x_j away from the clusters x_i sits in, so that rows of distinct classes do not share
    clusters (the paper: "by minimizing the purity loss, we increase the cross-entropy").

    Args:
        log_posterior: float [B, K], log P(k | x_b).
        i: int64 [P], first row of each pair.
        j: int64 [P], second row of each pair (a different class).

    Returns:
        Scalar loss (<= 0); 0, still attached to the graph, when there are no pairs.
    """
    if len(i) == 0:
        return log_posterior.sum() * 0.0
    target = log_posterior[i].detach().exp()
    return (target * log_posterior[j]).sum(dim=1).mean()
