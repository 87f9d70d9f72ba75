"""Backbones: shapes on tiny inputs, stage hooks, parameter counts, names and seeding."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.models import BACKBONES, build_backbone
from pipeline.models.registry import CIFAR_DEPTHS

# He et al. 2016, Table 6: parameters of the CIFAR-10 ResNets, in units of 10k.
PAPER_PARAMETERS_10K = {"resnet20": 27, "resnet32": 46, "resnet44": 66, "resnet56": 85}


def images(batch: int, channels: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(CIFAR_DEPTHS))
def test_cifar_resnets_run_on_8x8_digits(name: str) -> None:
    network = build_backbone(name, num_classes=10, in_channels=1, seed=0)
    x = images(3, 1, 8)
    final_map = network.forward_features(x)
    stages = network.forward_stages(x)
    assert final_map.shape == (3, 64, 2, 2)
    assert network(x).shape == (3, 10)
    assert [tuple(stage.shape) for stage in stages] == [(3, 16), (3, 32), (3, 64)]
    assert network.stage_dims == (16, 32, 64)
    assert network.feature_dim == 64


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS_10K))
def test_cifar_resnet_sizes_match_the_paper(name: str) -> None:
    network = build_backbone(name, num_classes=10, in_channels=3, seed=0)
    count = sum(parameter.numel() for parameter in network.parameters())
    assert round(count / 1e4) == PAPER_PARAMETERS_10K[name]


@pytest.mark.parametrize("side", [4, 5, 32])
def test_cifar_resnet_accepts_small_and_odd_sides(side: int) -> None:
    network = build_backbone("resnet20", num_classes=7, in_channels=3, seed=0)
    assert network(images(2, 3, side)).shape == (2, 7)


def test_resnet18_on_32x32_colour() -> None:
    network = build_backbone("resnet18", num_classes=5, in_channels=3, seed=0)
    x = images(2, 3, 32)
    assert network.forward_features(x).shape == (2, 512, 1, 1)
    assert network(x).shape == (2, 5)
    assert [tuple(stage.shape) for stage in network.forward_stages(x)] == [
        (2, 128),
        (2, 256),
        (2, 512),
    ]


def test_torchvision_stem_takes_greyscale() -> None:
    network = build_backbone("resnet18", num_classes=4, in_channels=1, seed=0)
    assert network.trunk[0].in_channels == 1
    assert network(images(2, 1, 8)).shape == (2, 4)


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])
def test_bottleneck_stage_dims(name: str) -> None:
    network = build_backbone(name, num_classes=3, in_channels=3, seed=0)
    assert network.stage_dims == (512, 1024, 2048)
    assert network.feature_dim == 2048
    stages = network.forward_stages(images(2, 3, 16))
    assert [stage.shape[1] for stage in stages] == [512, 1024, 2048]


def test_every_name_builds_a_consistent_backbone() -> None:
    for name in BACKBONES:
        network = build_backbone(name, num_classes=6, in_channels=3, seed=0)
        assert network.stage_dims[-1] == network.feature_dim, name
        assert tuple(network.fc.weight.shape) == (6, network.feature_dim), name
        assert network.num_classes == 6, name


def test_last_stage_is_the_pooled_feature_and_head_is_fc() -> None:
    network = build_backbone("resnet32", num_classes=10, in_channels=1, seed=0).eval()
    x = images(4, 1, 8)
    pooled = network.forward_head(network.forward_features(x), pre_logits=True)
    assert torch.equal(network.forward_stages(x)[-1], pooled)
    assert torch.equal(network(x), network.fc(pooled))


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(PipelineError, match="did you mean 'resnet32'.*valid: resnet20"):
        build_backbone("resnet-32", num_classes=10, in_channels=1)


def test_non_positive_sizes_are_refused() -> None:
    with pytest.raises(PipelineError, match="num_classes"):
        build_backbone("resnet20", num_classes=0, in_channels=1)


def test_seed_fixes_weights_and_leaves_global_stream_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = build_backbone("resnet20", num_classes=10, in_channels=1, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    second = build_backbone("resnet20", num_classes=10, in_channels=1, seed=7)
    other = build_backbone("resnet20", num_classes=10, in_channels=1, seed=8)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.equal(first.fc.weight, other.fc.weight)


def test_torchvision_names_are_the_builders_names() -> None:
    """The registry names torchvision's backbones without importing torchvision; the names
    must be the ones `torchvision_resnet` can build."""
    from pipeline.models.registry import TORCHVISION_BACKBONES
    from pipeline.models.torchvision_resnet import TORCHVISION_BUILDERS

    assert TORCHVISION_BACKBONES == tuple(TORCHVISION_BUILDERS)
