"""Per-image augmentation policies from torchvision: AutoAugment, RandAugment, the SimCLR view.

torchvision's v2 transforms draw one set of random parameters per call, from torch's global
CPU generator. So they are applied image by image, each inside ``torch.random.fork_rng`` with
the global CPU generator reseeded from a seed drawn off the loader's own generator: an epoch
stays a pure function of (seed, epoch), resumable, and the caller's global RNG is untouched.

Two scales, as in the long-tail papers' code:

* small images (CIFAR-size, held in memory): AutoAugment with the CIFAR-10 policy (Cubuk et
  al. 2019), RandAugment, and the SimCLR view with MoCo v2's CIFAR crop scale and no blur;
* large images (ImageNet-LT and other file datasets): AutoAugment with the ImageNet policy,
  RandAugment, and the SimCLR ImageNet view with Gaussian blur.

Random crops, flips and Cutout are not here: they are batched tensor ops in
:mod:`pipeline.data.transforms`, which composes them with these policies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

import torch

if TYPE_CHECKING:  # torchvision is imported where a policy is built: it costs seconds
    from torchvision.transforms import v2

RANDAUGMENT_NUM_OPS = 2
# Magnitude 10 on the 0..10 scale of the RandAugment paper and of timm's "rand-n2-m10" (PaCo):
# the strongest setting. torchvision maps magnitude m to m / (bins - 1) of each op's maximum,
# so 11 bins make its scale the paper's (its default 31 bins would make 10 a third as strong).
RANDAUGMENT_MAGNITUDE = 10
RANDAUGMENT_MAGNITUDE_BINS = 11

SIMCLR_JITTER = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue (Chen et al. 2020)
SIMCLR_JITTER_PROBABILITY = 0.8
SIMCLR_GRAYSCALE_PROBABILITY = 0.2
# The CIFAR crop scale of MoCo v2 and of PaCo's CIFAR code; large images keep the Inception
# scale (0.08, 1) of the file pipeline.
SIMCLR_SMALL_IMAGE_SCALE = (0.2, 1.0)
# SimCLR blurs ImageNet-size images only (kernel ~10% of the side); CIFAR-size views skip it.
SIMCLR_BLUR_PROBABILITY = 0.5
SIMCLR_BLUR_SIGMA = (0.1, 2.0)
SIMCLR_BLUR_KERNEL_SHARE = 0.1

# Below 2**63 so that every seed fits torch's int64 and manual_seed.
SEED_BOUND = 2**62

Image = TypeVar("Image")


def policy_seeds(count: int, generator: torch.Generator) -> list[int]:
    """Draw one seed per image for the global-RNG transforms.

    Args:
        count: number of images.
        generator: CPU generator the seeds come from.

    Returns:
        ``count`` non-negative integers.
    """
    return torch.randint(0, SEED_BOUND, (count,), generator=generator).tolist()


def apply_seeded(
    transform: Callable[[Image], Image], images: Sequence[Image], seeds: Sequence[int]
) -> list[Image]:
    """Apply ``transform`` to each image with torch's global CPU generator seeded by its seed.

    The global CPU RNG state is saved and restored around the calls, so the caller never sees
    them. Only the CPU default generator is reseeded (not ``torch.manual_seed``, which would
    also reseed, and leave reseeded, every CUDA generator).

    Args:
        transform: a transform drawing its randomness from torch's global CPU generator.
        images: the images (uint8 tensors [C, H, W] or PIL images).
        seeds: one seed per image.

    Returns:
        The transformed images, in order.
    """
    with torch.random.fork_rng(devices=[]):
        transformed = []
        for image, seed in zip(images, seeds, strict=True):
            torch.default_generator.manual_seed(seed)
            transformed.append(transform(image))
    return transformed


def fill_colour(mean: Sequence[float]) -> tuple[int, ...]:
    """The dataset's mean colour in uint8 pixels: what geometric ops fill uncovered pixels with.

    Zero padding in normalised space is the same colour, so crops, policies and Cutout agree.
    """
    return tuple(round(255 * channel_mean) for channel_mean in mean)


@lru_cache(maxsize=32)
def small_image_policy(
    augment: str, channels: int, image_size: int, fill: tuple[int, ...]
) -> v2.Transform:
    """The per-image policy of ``augment`` for CIFAR-size images.

    "autoaugment" and "randaugment" come after the batched crop and flip; "simclr" brings its
    own resized crop and flip. One-channel images get the SimCLR jitter of brightness and
    contrast only: saturation, hue and grayscale conversion do nothing to grey pixels.

    Args:
        augment: one of :data:`POLICY_AUGMENTATIONS`.
        channels: C, 1 or 3.
        image_size: side of the (square) images.
        fill: per-channel uint8 colour of pixels that geometric ops uncover.

    Returns:
        A transform of one uint8 [C, H, W] tensor.
    """
    from torchvision.transforms import v2

    if augment == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, fill=list(fill))
    if augment == "randaugment":
        return _randaugment(fill)
    colour_ops = _simclr_colour_ops(channels)
    return v2.Compose(
        [
            v2.RandomResizedCrop(image_size, scale=SIMCLR_SMALL_IMAGE_SCALE, antialias=True),
            v2.RandomHorizontalFlip(),
            *colour_ops,
        ]
    )


@lru_cache(maxsize=32)
def large_image_policy(augment: str, image_size: int, fill: tuple[int, ...]) -> v2.Transform:
    """The per-image policy of ``augment`` for ImageNet-size RGB images, after crop and flip.

    Args:
        augment: one of :data:`POLICY_AUGMENTATIONS`.
        image_size: side of the (square, already cropped) images.
        fill: per-channel uint8 colour of pixels that geometric ops uncover.

    Returns:
        A transform of one RGB PIL image.
    """
    from torchvision.transforms import v2

    if augment == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET, fill=list(fill))
    if augment == "randaugment":
        return _randaugment(fill)
    kernel = 2 * round(SIMCLR_BLUR_KERNEL_SHARE * image_size / 2) + 1  # odd, as blur needs
    blur = v2.GaussianBlur(kernel, sigma=SIMCLR_BLUR_SIGMA)
    return v2.Compose([*_simclr_colour_ops(3), v2.RandomApply([blur], p=SIMCLR_BLUR_PROBABILITY)])


def _randaugment(fill: tuple[int, ...]) -> v2.Transform:
    from torchvision.transforms import v2

    return v2.RandAugment(
        num_ops=RANDAUGMENT_NUM_OPS,
        magnitude=RANDAUGMENT_MAGNITUDE,
        num_magnitude_bins=RANDAUGMENT_MAGNITUDE_BINS,
        fill=list(fill),
    )


def _simclr_colour_ops(channels: int) -> list[v2.Transform]:
    from torchvision.transforms import v2

    brightness, contrast, saturation, hue = SIMCLR_JITTER
    if channels == 1:
        jitter = v2.ColorJitter(brightness=brightness, contrast=contrast)
        return [v2.RandomApply([jitter], p=SIMCLR_JITTER_PROBABILITY)]
    jitter = v2.ColorJitter(brightness, contrast, saturation, hue)
    return [
        v2.RandomApply([jitter], p=SIMCLR_JITTER_PROBABILITY),
        v2.RandomGrayscale(p=SIMCLR_GRAYSCALE_PROBABILITY),
    ]


def policy_batch(
    images: torch.Tensor,
    augment: str,
    generator: torch.Generator,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Apply the small-image policy of ``augment`` to every image of a normalised batch.

    The batch is un-normalised to uint8 pixels on the CPU, transformed image by image, and
    normalised back on its own device. On CUDA that costs a round trip of B*C*H*W bytes per
    batch; the per-image CPU ops (well under a millisecond each at 32x32) dominate.

    Args:
        images: float [B, C, H, W], ``(pixels / 255 - mean) / std``.
        augment: one of :data:`POLICY_AUGMENTATIONS`.
        generator: CPU generator of the per-image seeds.
        mean: C channel means in [0, 1] pixel units.
        std: C channel standard deviations in [0, 1] pixel units.

    Returns:
        float [B, C, H, W], normalised, on the device and of the dtype of ``images``.
    """
    batch, channels, height, _ = images.shape
    policy = small_image_policy(augment, channels, height, fill_colour(mean))
    pixels = _to_pixels(images, mean, std)
    transformed = apply_seeded(policy, list(pixels), policy_seeds(batch, generator))
    return _from_pixels(torch.stack(transformed), mean, std, images)


def _channel_view(values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def _to_pixels(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [B, C, H, W] on the CPU from normalised float images."""
    unit = images * _channel_view(std, images) + _channel_view(mean, images)
    return (unit * 255).round_().clamp_(0, 255).to(torch.uint8).cpu()


def _from_pixels(
    pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float], like: torch.Tensor
) -> torch.Tensor:
    """Normalised images with the dtype and device of ``like`` from uint8 [B, C, H, W]."""
    unit = pixels.to(like.device).to(like.dtype) / 255
    return (unit - _channel_view(mean, like)) / _channel_view(std, like)
