"""The Gaussian-mixture flow filter of DLSA (Xu et al., ECCV 2022, Sec. 3.3).

A masked autoregressive flow (MAF, Papamakarios et al. 2017) maps a feature x to a latent u
whose distribution is modelled as a uniform mixture of K unit-covariance Gaussians with
frozen, randomly drawn centres (Eq. 3). The filter gives each row its log-likelihood (Eq. 5,
through the change of variables of Eq. 1) and its cluster posterior P(k|x) (Eq. 4).

Only x -> (u, log|det J|) is built: DLSA never samples from the flow nor inverts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from nflows.transforms import (
    BatchNorm,
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    ReversePermutation,
)
from torch import nn

from features.errors import FeaturesError

# MADE blocks of the MAF (REFERENCE: 2 blocks, one hidden layer each).
NUM_MADE_BLOCKS = 2
# How a MADE block's outputs (alpha, mu) move a coordinate: "maf", u = (x - mu) exp(-alpha)
# (MAF, Papamakarios et al. 2017, Eq. 4-5, and the official DLSA code); "nflows", nflows' own
# u = softplus(alpha) x + mu with a 1e-3 floor on the scale.
AFFINE_FORMS = ("maf", "nflows")


class MAFAffineTransform(MaskedAffineAutoregressiveTransform):
    """A MADE block with the MAF paper's affine map: u_i = (x_i - mu_i) exp(-alpha_i).

    (alpha_i, mu_i) come from x_{<i} through the masked network, so log |det du/dx| =
    -sum_i alpha_i (MAF Eq. 5). The inverse is never needed by DLSA.
    """

    def _elementwise_forward(
        self, inputs: torch.Tensor, autoregressive_params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self._unconstrained_scale_and_shift(autoregressive_params)
        return (inputs - shift) * torch.exp(-log_scale), -log_scale.sum(dim=1)

    def _elementwise_inverse(
        self, inputs: torch.Tensor, autoregressive_params: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("DLSA never inverts a flow filter")


def default_sigma(dim: int) -> float:
    """Spread of the mixture centres, sigma = sqrt(3 / (2D)) (DLSA supplement, Sec. 3).

    With each coordinate of a centre drawn from N(0, sigma^2), two centres lie
    E||mu_p - mu_q||^2 = 2 D sigma^2 = 3 apart, i.e. near each other's three-sigma border.

    Args:
        dim: D, the feature dimension.

    Returns:
        sigma.
    """
    return math.sqrt(3.0 / (2.0 * dim))


@dataclass(frozen=True)
class FlowOutput:
    """What a flow filter says about a batch of rows.

    Attributes:
        latent: float [N, D], u = g^{-1}(x).
        log_det: float [N], log |det dg^{-1}/dx| at each row.
        log_likelihood: float [N], log P(x) = logsumexp_k log N(u | mu_k, I) - log K
            + log |det J| (Eq. 5 of the DLSA paper, in log space).
        log_posterior: float [N, K], log P(k | x) (Eq. 4).
    """

    latent: torch.Tensor
    log_det: torch.Tensor
    log_likelihood: torch.Tensor
    log_posterior: torch.Tensor


class GaussianMixtureBase(nn.Module):
    """Uniform mixture of K unit-covariance Gaussians with frozen centres (Eq. 3).

    The centres are a buffer, not a parameter: they are drawn once and never trained, but
    are saved with the state dict so that a reloaded filter keeps its clusters.

    Args:
        dim: D.
        num_clusters: K.
        sigma: Standard deviation of each centre coordinate.
        generator: CPU generator the centres are drawn from.
    """

    def __init__(
        self, dim: int, num_clusters: int, *, sigma: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        centres = sigma * torch.randn(num_clusters, dim, generator=generator, dtype=torch.float32)
        self.register_buffer("centres", centres)

    @property
    def num_clusters(self) -> int:
        return self.centres.shape[0]

    def log_component_densities(self, latent: torch.Tensor) -> torch.Tensor:
        """log N(u | mu_k, I) = -D/2 log(2 pi) - ||u - mu_k||^2 / 2.

        Args:
            latent: float [N, D], u.

        Returns:
            float [N, K].
        """
        dim = latent.shape[1]
        centres = self.centres.to(latent.dtype)
        # Expanded square: an [N, K, D] difference tensor would not fit for K = 500, D = 2048.
        squared = (
            (latent * latent).sum(dim=1, keepdim=True)
            - 2.0 * latent @ centres.T
            + (centres * centres).sum(dim=1)
        )
        return -0.5 * dim * math.log(2.0 * math.pi) - 0.5 * squared.clamp(min=0.0)


class FlowFilter(nn.Module):
    """DLSA flow filter: standardise, MAF with 2 MADE blocks, Gaussian-mixture base.

    Architecture (REFERENCE, "DLSA"): each MADE block has one hidden layer of width D; the
    coordinate order is reversed between blocks; an nflows BatchNorm transform follows each
    block. Rows are first standardised with the training mean and std stored as buffers
    (identity until `set_standardization` is called); that affine map is part of the flow,
    so `log_det` and `log_likelihood` are those of the raw feature x.

    All parameters and the centres come from `seed`; the global torch RNG is left untouched.

    Args:
        dim: D, the feature dimension.
        num_clusters: K, the number of mixture components (clusters).
        seed: Seed of the parameter initialisation and of the centres.
        sigma: Spread of the centres; `default_sigma(dim)` when None.
        affine: The MADE blocks' affine map, one of `AFFINE_FORMS`.
    """

    def __init__(
        self,
        dim: int,
        num_clusters: int,
        *,
        seed: int,
        sigma: float | None = None,
        affine: str = "maf",
    ) -> None:
        super().__init__()
        if dim < 1 or num_clusters < 1:
            raise FeaturesError(
                f"FlowFilter needs dim >= 1 and num_clusters >= 1, got {dim} and {num_clusters}"
            )
        sigma = default_sigma(dim) if sigma is None else sigma
        if not sigma > 0:
            raise FeaturesError(f"FlowFilter sigma must be > 0, got {sigma}")
        if affine not in AFFINE_FORMS:
            raise FeaturesError(f"FlowFilter affine must be one of {AFFINE_FORMS}, got {affine!r}")
        self.dim = dim
        self.sigma = float(sigma)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.transform = _maf(dim, affine)
        self.base = GaussianMixtureBase(
            dim, num_clusters, sigma=self.sigma, generator=torch.Generator().manual_seed(seed)
        )
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @property
    def num_clusters(self) -> int:
        return self.base.num_clusters

    def set_standardization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Sets the per-feature statistics rows are standardised with.

        Args:
            mean: float [D], training mean.
            std: float [D], training standard deviation, > 0.
        """
        if mean.shape != (self.dim,) or std.shape != (self.dim,) or not bool((std > 0).all()):
            raise FeaturesError(
                f"flow standardisation: expected mean and std of shape ({self.dim},) with "
                f"std > 0, got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, x: torch.Tensor) -> FlowOutput:
        """Runs rows through the filter.

        In training mode the BatchNorm transforms use (and update) batch statistics, so a
        batch needs at least two rows; in eval mode they use the running statistics.

        Args:
            x: float [N, D], raw features.

        Returns:
            Latent, log-determinant, log-likelihood and cluster log-posterior of each row.
        """
        latent, log_det = self.transform((x - self.mean) / self.std)
        # d/dx of (x - mean) / std contributes -sum log std to every row's log-determinant.
        log_det = log_det - torch.log(self.std).sum()
        components = self.base.log_component_densities(latent)
        log_likelihood = torch.logsumexp(components, dim=1) - math.log(self.num_clusters) + log_det
        return FlowOutput(
            latent=latent,
            log_det=log_det,
            log_likelihood=log_likelihood,
            log_posterior=torch.log_softmax(components, dim=1),
        )


def _maf(dim: int, affine: str) -> CompositeTransform:
    """MADE, BatchNorm, reverse, MADE, BatchNorm (uses the global RNG for initialisation)."""
    block_type = MAFAffineTransform if affine == "maf" else MaskedAffineAutoregressiveTransform
    layers: list[nn.Module] = []
    for block in range(NUM_MADE_BLOCKS):
        if block > 0:
            layers.append(ReversePermutation(features=dim))
        # nflows' MADE always has an input layer; num_blocks counts extra hidden layers on top,
        # so num_blocks=0 with plain (non-residual) blocks gives exactly one hidden layer.
        layers.append(
            block_type(
                features=dim, hidden_features=dim, num_blocks=0, use_residual_blocks=False
            )
        )
        norm = BatchNorm(features=dim)
        # nflows starts the running variance at 0, which would make an untrained filter in eval
        # mode divide by sqrt(eps); 1 is the neutral start.
        norm.running_var.fill_(1.0)
        layers.append(norm)
    return CompositeTransform(layers)
