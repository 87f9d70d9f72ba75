"""Tests of the Gaussian-mixture flow filter."""

from __future__ import annotations

import math

import pytest
import torch
from nflows.transforms import BatchNorm, MaskedAffineAutoregressiveTransform

from features.dlsa.flow import FlowFilter, MAFAffineTransform, default_sigma
from features.errors import FeaturesError


def _nontrivial_filter(dim: int = 3, num_clusters: int = 4) -> FlowFilter:
    """A filter whose BatchNorm statistics, scales and standardisation are not the identity."""
    flow = FlowFilter(dim, num_clusters, seed=3)
    generator = torch.Generator().manual_seed(0)
    flow.set_standardization(
        torch.randn(dim, generator=generator), 0.5 + torch.rand(dim, generator=generator)
    )
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    flow.train()
    with torch.no_grad():
        for _ in range(3):
            flow(2.0 * torch.randn(64, dim, generator=generator) + 1.0)
    return flow.eval()


def _direct_log_normal(latent: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """log N(u | mu_k, I), transcribed term by term, [N, K]."""
    dim = latent.shape[1]
    diff = latent[:, None, :] - centres[None, :, :]
    return -0.5 * dim * math.log(2 * math.pi) - 0.5 * (diff**2).sum(dim=2)


def test_log_likelihood_is_the_change_of_variables_with_an_autograd_jacobian() -> None:
    flow = _nontrivial_filter().double()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = flow(x)
    centres = flow.base.centres
    for row in range(len(x)):
        jacobian = torch.autograd.functional.jacobian(lambda v: flow(v[None]).latent[0], x[row])
        log_det = torch.linalg.slogdet(jacobian).logabsdet
        latent = out.latent[row : row + 1]
        expected = (
            torch.logsumexp(_direct_log_normal(latent, centres)[0], dim=0)
            - math.log(len(centres))
            + log_det
        )
        assert out.log_det[row].item() == pytest.approx(log_det.item(), abs=1e-9)
        assert out.log_likelihood[row].item() == pytest.approx(expected.item(), abs=1e-9)


def test_posterior_is_bayes_rule_over_the_components_and_sums_to_one() -> None:
    flow = _nontrivial_filter(dim=4, num_clusters=7)
    x = torch.randn(20, 4, generator=torch.Generator().manual_seed(2))
    out = flow(x)
    components = _direct_log_normal(out.latent.double(), flow.base.centres.double())
    expected = torch.softmax(components, dim=1)
    torch.testing.assert_close(out.log_posterior.exp().double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        out.log_posterior.exp().sum(dim=1), torch.ones(20), atol=1e-5, rtol=0
    )


def test_component_densities_match_the_transcription() -> None:
    flow = FlowFilter(6, 5, seed=0)
    latent = 3.0 * torch.randn(9, 6, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        flow.base.log_component_densities(latent),
        _direct_log_normal(latent, flow.base.centres),
        atol=1e-4,
        rtol=1e-5,
    )


def test_same_seed_same_filter_and_the_global_rng_is_untouched() -> None:
    state = torch.get_rng_state()
    first, second = FlowFilter(5, 8, seed=11), FlowFilter(5, 8, seed=11)
    assert torch.equal(torch.get_rng_state(), state)
    other = FlowFilter(5, 8, seed=12)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key])
    assert not torch.equal(first.base.centres, other.base.centres)
    assert not torch.equal(
        first.state_dict()["transform._transforms.0.autoregressive_net.initial_layer.weight"],
        other.state_dict()["transform._transforms.0.autoregressive_net.initial_layer.weight"],
    )


def test_centres_are_a_saved_buffer_with_the_default_spread() -> None:
    dim = 256
    flow = FlowFilter(dim, 200, seed=0)
    assert "base.centres" in flow.state_dict()
    assert all(name != "base.centres" for name, _ in flow.named_parameters())
    assert default_sigma(dim) == pytest.approx(math.sqrt(3 / (2 * dim)))
    assert flow.base.centres.std().item() == pytest.approx(default_sigma(dim), rel=0.02)
    wide = FlowFilter(dim, 200, seed=0, sigma=0.5)
    assert wide.base.centres.std().item() == pytest.approx(0.5, rel=0.02)


def test_architecture_is_two_made_blocks_of_one_hidden_layer_each() -> None:
    dim = 6
    flow = FlowFilter(dim, 3, seed=0)
    blocks = [m for m in flow.modules() if isinstance(m, MaskedAffineAutoregressiveTransform)]
    norms = [m for m in flow.modules() if isinstance(m, BatchNorm)]
    assert len(blocks) == 2 and len(norms) == 2
    for block in blocks:
        made = block.autoregressive_net
        assert len(made.blocks) == 0  # input -> one hidden layer of width D -> output
        assert made.initial_layer.out_features == dim
        assert not made.use_residual_blocks


def test_standardisation_is_part_of_the_density() -> None:
    """Scaling x by s and the stored std by s shifts log P(x) by -D log s, nothing else."""
    flow = _nontrivial_filter()
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(5))
    before = flow(x).log_likelihood
    flow.set_standardization(flow.mean * 2.0, flow.std * 2.0)
    after = flow(2.0 * x).log_likelihood
    torch.testing.assert_close(after, before - 3 * math.log(2.0), atol=1e-5, rtol=0)


@pytest.mark.parametrize(("dim", "clusters", "sigma"), [(0, 3, None), (3, 0, None), (3, 3, -1.0)])
def test_bad_shapes_are_errors(dim: int, clusters: int, sigma: float | None) -> None:
    with pytest.raises(FeaturesError):
        FlowFilter(dim, clusters, seed=0, sigma=sigma)


def test_bad_standardisation_is_an_error() -> None:
    flow = FlowFilter(3, 2, seed=0)
    with pytest.raises(FeaturesError, match="std > 0"):
        flow.set_standardization(torch.zeros(3), torch.zeros(3))


@pytest.mark.parametrize("affine", ["maf", "nflows"])
def test_log_det_is_the_log_determinant_of_the_jacobian(affine: str) -> None:
    """Both MADE maps: log |det du/dx| of the whole filter equals autograd's Jacobian."""
    flow = FlowFilter(4, 3, seed=1, affine=affine).eval()
    with torch.no_grad():  # move BatchNorm off its identity start so it counts too
        for module in flow.modules():
            if hasattr(module, "running_var"):
                module.running_var.fill_(2.0)
    x = torch.randn(1, 4, generator=torch.Generator().manual_seed(0))
    jacobian = torch.autograd.functional.jacobian(lambda row: flow(row).latent, x)[0, :, 0, :]
    torch.testing.assert_close(flow(x).log_det[0], torch.linalg.slogdet(jacobian).logabsdet,
                               rtol=1e-4, atol=1e-4)


def test_maf_block_is_the_maf_papers_affine_map() -> None:
    """u_i = (x_i - mu_i) exp(-alpha_i), (alpha_i, mu_i) from x_{<i} (MAF Eq. 4-5)."""
    torch.manual_seed(0)
    block = MAFAffineTransform(features=3, hidden_features=3, num_blocks=0,
                               use_residual_blocks=False)
    x = torch.randn(5, 3)
    params = block.autoregressive_net(x).view(5, 3, 2)
    alpha, mu = params[..., 0], params[..., 1]
    u, log_det = block(x)
    torch.testing.assert_close(u, (x - mu) * torch.exp(-alpha))
    torch.testing.assert_close(log_det, -alpha.sum(dim=1))
    changed = x.clone()
    changed[:, 2] += 1.0  # the last coordinate feeds no other coordinate's (alpha, mu)
    torch.testing.assert_close(block(changed)[0][:, :2], u[:, :2])
