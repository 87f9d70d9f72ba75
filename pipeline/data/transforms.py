"""Image transforms: batched tensor augmentation for in-memory images, PIL pipelines for files."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as functional
from PIL import Image
from torchvision.transforms import functional as image_functional

from pipeline.errors import PipelineError

AUGMENTATIONS: tuple[str, ...] = ("none", "crop", "crop_flip")

# torchvision's RandomResizedCrop defaults (Szegedy et al. 2015's "Inception" crop).
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
# Eval images are resized so the centre crop keeps 224/256 of the side, the ImageNet habit.
EVAL_RESIZE_RATIO = 256 / 224


def check_augmentation(augment: str) -> None:
    """Raise a :class:`PipelineError` naming the valid choices if ``augment`` is unknown."""
    if augment not in AUGMENTATIONS:
        raise PipelineError(
            f"augment: unknown augmentation '{augment}'; valid: {', '.join(AUGMENTATIONS)}"
        )


def normalised_tensor(
    images: np.ndarray, mean: Sequence[float], std: Sequence[float], device: torch.device
) -> torch.Tensor:
    """Turn uint8 images into normalised float tensors.

    Args:
        images: uint8 [N, H, W, C].
        mean: C channel means in [0, 1] pixel units.
        std: C channel standard deviations in [0, 1] pixel units.
        device: where the result lives.

    Returns:
        float32 [N, C, H, W], ``(x / 255 - mean) / std``.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2)
    mean_tensor = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    std_tensor = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return ((pixels.float() / 255 - mean_tensor) / std_tensor).contiguous()


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad every image by ``padding`` and crop it back at its own random offset.

    Zero is the mean colour once images are normalised, so the border adds no signal.

    Args:
        images: float [B, C, H, W].
        padding: pixels added on each side.
        generator: CPU generator of the offsets.

    Returns:
        float [B, C, H, W].
    """
    batch, channels, height, width = images.shape
    padded = functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(images.device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator).to(images.device)
    rows = (top[:, None] + torch.arange(height, device=images.device)).view(batch, 1, height, 1)
    cols = (left[:, None] + torch.arange(width, device=images.device)).view(batch, 1, 1, width)
    cropped_rows = padded.gather(2, rows.expand(batch, channels, height, padded.shape[3]))
    return cropped_rows.gather(3, cols.expand(batch, channels, height, width))


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2.

    Args:
        images: float [B, C, H, W].
        generator: CPU generator of the coin flips.

    Returns:
        float [B, C, H, W].
    """
    flips = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flips.to(images.device).view(-1, 1, 1, 1), images.flip(3), images)


def augment_batch(images: torch.Tensor, augment: str, generator: torch.Generator) -> torch.Tensor:
    """Apply one of :data:`AUGMENTATIONS` to a batch, each image with its own random numbers.

    "crop" pads by ``max(1, H // 8)`` (4 pixels at 32x32, as in the CIFAR recipe) and crops
    back; "crop_flip" adds a horizontal flip.

    Args:
        images: float [B, C, H, W], normalised.
        augment: one of :data:`AUGMENTATIONS`.
        generator: CPU generator of all random numbers.

    Returns:
        float [B, C, H, W].
    """
    check_augmentation(augment)
    if augment == "none":
        return images
    images = random_crop(images, max(1, images.shape[2] // 8), generator)
    return random_flip(images, generator) if augment == "crop_flip" else images


def inception_crop_box(
    width: int, height: int, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """Draw a RandomResizedCrop box (random area and aspect ratio) from ``generator``.

    torchvision's transform draws from the global RNG; this draws from an explicit generator so
    every image's crop is a function of its own seed, whatever worker loads it.

    Args:
        width: image width in pixels.
        height: image height in pixels.
        generator: CPU generator.

    Returns:
        (top, left, crop height, crop width).
    """
    area = width * height
    log_ratio = (math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    for _ in range(CROP_ATTEMPTS):
        draws = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
        target_area = area * (CROP_SCALE[0] + draws[0] * (CROP_SCALE[1] - CROP_SCALE[0]))
        ratio = math.exp(log_ratio[0] + draws[1] * (log_ratio[1] - log_ratio[0]))
        crop_width = round(math.sqrt(target_area * ratio))
        crop_height = round(math.sqrt(target_area / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = math.floor(draws[2] * (height - crop_height + 1))
            left = math.floor(draws[3] * (width - crop_width + 1))
            return top, left, crop_height, crop_width
    return _central_crop_box(width, height)


def _central_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The largest centred box whose aspect ratio lies within CROP_RATIO."""
    ratio = width / height
    if ratio < CROP_RATIO[0]:
        crop_width, crop_height = width, round(width / CROP_RATIO[0])
    elif ratio > CROP_RATIO[1]:
        crop_width, crop_height = round(height * CROP_RATIO[1]), height
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def file_image_tensor(
    image: Image.Image,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    augment: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Turn one RGB image from disk into the normalised square tensor the model sees.

    With ``augment`` "none": resize the short side to ``image_size * 256 / 224`` and take the
    centre ``image_size`` crop. Otherwise: a RandomResizedCrop to ``image_size``, plus a
    horizontal flip for "crop_flip".

    Args:
        image: an RGB PIL image.
        image_size: S, side of the output.
        mean: 3 channel means in [0, 1] pixel units.
        std: 3 channel standard deviations in [0, 1] pixel units.
        augment: one of :data:`AUGMENTATIONS`.
        generator: CPU generator of this image's random numbers (unused for "none").

    Returns:
        float32 [3, S, S].
    """
    check_augmentation(augment)
    if augment == "none":
        image = image_functional.resize(image, int(image_size * EVAL_RESIZE_RATIO))
        image = image_functional.center_crop(image, [image_size, image_size])
    else:
        assert generator is not None, "augmentation needs a generator"
        top, left, crop_height, crop_width = inception_crop_box(*image.size, generator)
        image = image_functional.resized_crop(
            image, top, left, crop_height, crop_width, [image_size, image_size]
        )
        if augment == "crop_flip" and torch.rand(1, generator=generator).item() < 0.5:
            image = image_functional.hflip(image)
    tensor = image_functional.to_tensor(image)
    return image_functional.normalize(tensor, list(mean), list(std))
