"""Tests of the DLSA flow-filter losses against direct transcriptions of the paper's equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from features.configs import FlowTrainConfig
from features.dlsa.flow import FlowOutput
from features.dlsa.losses import (
    ClusterBalance,
    eq6_weights,
    flow_objective,
    kl_to_uniform,
    mle_class_weights,
    purity_loss,
    purity_pairs,
    weighted_mle_loss,
)
from features.dlsa.training import step_objective
from features.errors import FeaturesError

COUNTS = torch.tensor([500, 120, 30, 8, 2])


def test_mle_weights_follow_eq6_and_average_to_one_over_training_rows() -> None:
    weights = mle_class_weights(COUNTS, q=2.0)
    paper = COUNTS.double() ** -2.0 / (COUNTS.double() ** -2.0).sum()  # Eq. 6
    torch.testing.assert_close(weights / weights.sum(), paper)
    assert float((weights * COUNTS).sum() / COUNTS.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(mle_class_weights(COUNTS, q=0.0), torch.ones(5, dtype=torch.float64))


def test_eq6_weights_sum_to_one_over_the_classes_present() -> None:
    counts = COUNTS.double()
    paper = counts**-2.0 / (counts**-2.0).sum()
    torch.testing.assert_close(eq6_weights(COUNTS, 2.0), paper)
    with_empty = eq6_weights(torch.tensor([4, 0, 1]), 1.0)
    torch.testing.assert_close(with_empty, torch.tensor([0.2, 0.0, 0.8], dtype=torch.float64))


def test_weighted_mle_loss_eq7_is_the_printed_sum_and_mean_differs_by_the_stated_constant() -> None:
    generator = torch.Generator().manual_seed(0)
    log_likelihood = torch.randn(16, generator=generator) * 5
    labels = torch.randint(5, (16,), generator=generator)
    q = 1.5
    counts = COUNTS.double()
    omega = counts**-q / (counts**-q).sum()  # Eq. 6
    eq7 = -sum(omega[int(y)] * float(ll) for y, ll in zip(labels, log_likelihood, strict=True))
    assert weighted_mle_loss(log_likelihood, labels, COUNTS, q).item() == pytest.approx(
        eq7, rel=1e-5
    )
    mean = weighted_mle_loss(log_likelihood, labels, COUNTS, q, form="mean")
    factor = counts.sum() * (counts**-q).sum() / (len(labels) * (counts ** (1 - q)).sum())
    assert mean.item() == pytest.approx(float(factor) * eq7, rel=1e-5)
    assert weighted_mle_loss(log_likelihood, labels, COUNTS, 0.0, form="mean").item() == (
        pytest.approx(-log_likelihood.mean().item(), rel=1e-6)
    )
    with pytest.raises(FeaturesError, match="unknown MLE form"):
        weighted_mle_loss(log_likelihood, labels, COUNTS, q, form="sum")


def test_flow_objective_is_eq11() -> None:
    mle, bal, pure = torch.tensor(3.0), torch.tensor(0.25), torch.tensor(-2.0)
    assert flow_objective(mle, bal, pure, 0.5, 0.1).item() == pytest.approx(3.0 + 0.125 - 0.2)
    assert flow_objective(mle, None, pure, 0.5, 0.1).item() == pytest.approx(2.8)
    assert flow_objective(mle, bal, None, 0.5, 0.1).item() == pytest.approx(3.125)


def test_one_batch_total_is_eq11_of_the_transcribed_losses() -> None:
    """The training step's L_total on a known batch against Eq. 7, 9 and 10 written out."""
    generator = torch.Generator().manual_seed(3)
    rows, clusters = 12, 4
    log_likelihood = torch.randn(rows, generator=generator) * 3
    posterior = torch.softmax(torch.randn(rows, clusters, generator=generator), dim=1)
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4])
    out = FlowOutput(latent=torch.zeros(rows, 2), log_det=torch.zeros(rows),
                     log_likelihood=log_likelihood, log_posterior=posterior.log())
    config = FlowTrainConfig(num_clusters=clusters, lambda_bal=0.7, lambda_pure=0.3, q=1.2)
    total, parts = step_objective(out, labels, COUNTS, config, ClusterBalance(clusters, 0.9),
                                  torch.Generator().manual_seed(11))
    counts = COUNTS.double()
    omega = counts**-1.2 / (counts**-1.2).sum()
    mle = -sum(float(omega[y] * ll) for y, ll in zip(labels, log_likelihood, strict=True))
    p = posterior.double().mean(dim=0)  # first step: the corrected estimate is the batch's
    balance = float((p * p.log()).sum()) + math.log(clusters)  # Eq. 9 + log K
    i, j = purity_pairs(labels, torch.Generator().manual_seed(11))
    purity = float(np.mean([float((posterior[a] * posterior[b].log()).sum())
                            for a, b in zip(i, j, strict=True)]))  # Eq. 10
    assert parts["mle"].item() == pytest.approx(mle, rel=1e-5)
    assert parts["balance"].item() == pytest.approx(balance, rel=1e-5, abs=1e-7)
    assert parts["purity"].item() == pytest.approx(purity, rel=1e-5)
    assert total.item() == pytest.approx(mle + 0.7 * balance + 0.3 * purity, rel=1e-5)


def test_mle_weights_reject_bad_input() -> None:
    with pytest.raises(FeaturesError, match="q must be >= 0"):
        mle_class_weights(COUNTS, q=-1.0)
    with pytest.raises(FeaturesError, match="class_counts"):
        mle_class_weights(torch.zeros(3), q=1.0)


def test_bias_correction_is_unbiased_on_a_constant_input() -> None:
    p = torch.softmax(torch.randn(6, generator=torch.Generator().manual_seed(1)), dim=0)
    balance = ClusterBalance(6, eta=0.7)
    for _ in range(12):
        torch.testing.assert_close(balance.update(p), p.double(), atol=1e-12, rtol=0)


def test_momentum_estimate_is_the_closed_form_of_the_supplement() -> None:
    """p~_t = sum_i (1 - eta) eta^(t-i) p_i (supplement Eq. 2), corrected by 1 / (1 - eta^t)."""
    eta, generator = 0.7, torch.Generator().manual_seed(2)
    batches = [torch.softmax(torch.randn(5, generator=generator), 0).double() for _ in range(7)]
    balance = ClusterBalance(5, eta)
    for t in range(1, len(batches) + 1):
        corrected = balance.update(batches[t - 1])
        closed = sum((1 - eta) * eta ** (t - i) * batches[i - 1] for i in range(1, t + 1))
        torch.testing.assert_close(corrected, closed / (1 - eta**t))


def test_balance_loss_is_kl_to_uniform_and_negative_entropy_plus_log_k() -> None:
    p = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=torch.float64)
    entropy = -(p * p.log()).sum()
    assert kl_to_uniform(p).item() == pytest.approx((-entropy + math.log(4)).item())
    assert kl_to_uniform(torch.full((4,), 0.25)).item() == pytest.approx(0.0, abs=1e-7)
    log_posterior = torch.log(p.float()).expand(3, 4)
    loss = ClusterBalance(4, eta=0.7)(log_posterior)
    assert loss.item() == pytest.approx((-entropy + math.log(4)).item(), rel=1e-5)


def test_balance_gradient_flows_through_the_current_batch_only() -> None:
    eta, generator = 0.7, torch.Generator().manual_seed(3)
    balance = ClusterBalance(4, eta)
    first = torch.randn(8, 4, generator=generator).log_softmax(1).requires_grad_()
    balance(first)
    running = balance.running.clone()
    second = torch.randn(8, 4, generator=generator).log_softmax(1).requires_grad_()
    balance(second).backward()
    assert first.grad is None
    # Direct transcription with the running part as a constant.
    again = second.detach().clone().requires_grad_()
    mean = again.exp().mean(0).double()
    corrected = (eta * running + (1 - eta) * mean) / (1 - eta**2)
    (corrected * corrected.log()).sum().backward()
    torch.testing.assert_close(second.grad, again.grad.float(), atol=1e-6, rtol=1e-5)


def test_balance_state_round_trips() -> None:
    generator = torch.Generator().manual_seed(4)
    batches = [torch.randn(8, 3, generator=generator).log_softmax(1) for _ in range(4)]
    whole = ClusterBalance(3, eta=0.7)
    losses = [whole(batch) for batch in batches]
    part = ClusterBalance(3, eta=0.7)
    for batch in batches[:2]:
        part(batch)
    resumed = ClusterBalance(3, eta=0.7)
    resumed.load_state_dict(part.state_dict())
    assert [resumed(batch).item() for batch in batches[2:]] == [x.item() for x in losses[2:]]
    with pytest.raises(FeaturesError, match="clusters"):
        ClusterBalance(5, eta=0.7).load_state_dict(part.state_dict())


def test_purity_pairs_are_uniform_over_classes_for_an_imbalanced_batch() -> None:
    counts = [600, 60, 6, 1]
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    i, j = purity_pairs(labels, torch.Generator().manual_seed(5), num_pairs=24000)
    first, second = labels[i], labels[j]
    assert bool((first != second).all())
    for members in (first, second):
        observed = np.bincount(members.numpy(), minlength=4)
        expected = len(members) / 4
        chi2 = ((observed - expected) ** 2 / expected).sum()
        assert chi2 < 16.3, observed  # chi-square, 3 dof, p = 0.001
    ordered = np.bincount((first * 4 + second).numpy(), minlength=16).reshape(4, 4)
    off_diagonal = ordered[~np.eye(4, dtype=bool)]
    expected = 24000 / 12
    assert ((off_diagonal - expected) ** 2 / expected).sum() < 31.3  # 11 dof, p = 0.001
    # A row-uniform draw would put ~90 % of first members in class 0.
    assert np.bincount(first.numpy(), minlength=4)[0] < 0.3 * 24000


def test_purity_pairs_of_a_single_class_batch_are_empty() -> None:
    i, j = purity_pairs(torch.zeros(10, dtype=torch.int64), torch.Generator().manual_seed(0))
    assert i.numel() == 0 and j.numel() == 0
    log_posterior = torch.randn(10, 3).log_softmax(1).requires_grad_()
    loss = purity_loss(log_posterior, i, j)
    assert loss.item() == 0.0
    loss.backward()


def test_purity_pairs_are_seeded() -> None:
    labels = torch.randint(5, (100,), generator=torch.Generator().manual_seed(1))
    a = purity_pairs(labels, torch.Generator().manual_seed(7))
    b = purity_pairs(labels, torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(a[0]) == 100


def test_purity_loss_is_eq10_with_the_first_posterior_detached() -> None:
    generator = torch.Generator().manual_seed(6)
    log_posterior = torch.randn(6, 5, generator=generator).log_softmax(1).requires_grad_()
    i, j = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    loss = purity_loss(log_posterior, i, j)
    p = log_posterior.detach().exp()
    direct = sum((p[a] * log_posterior.detach()[b]).sum() for a, b in zip(i, j, strict=True)) / 3
    assert loss.item() == pytest.approx(direct.item(), rel=1e-6)
    loss.backward()
    assert torch.count_nonzero(log_posterior.grad[:3]) == 0  # P(k|x_i) is a constant target
    assert torch.count_nonzero(log_posterior.grad[3:]) > 0


def test_minimising_purity_loss_separates_the_pair() -> None:
    """Distinct-class rows sharing a cluster cost more than rows in different clusters."""
    shared = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1]]))
    apart = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    pair = (torch.tensor([0]), torch.tensor([1]))
    assert purity_loss(apart, *pair) < purity_loss(shared, *pair)
    # One gradient step on the second row moves it further out of the first row's cluster
    # (at P(.|x_j) = P(.|x_i) exactly the gradient vanishes: that is the loss's maximum).
    logits = torch.tensor([[2.0, 0.0], [1.0, 0.0]], requires_grad=True)
    purity_loss(logits.log_softmax(1), *pair).backward()
    with torch.no_grad():
        moved = (logits - 0.5 * logits.grad).softmax(1)
    assert moved[1, 0] < logits.detach().softmax(1)[1, 0]
