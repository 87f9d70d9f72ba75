"""Image transforms: batched tensor augmentation for in-memory images, PIL pipelines for files.

The augmentations, by name (:data:`AUGMENTATIONS`; in-memory CIFAR-size images / file images):

* "none": the image as it is / resize and centre crop.
* "crop": pad by H // 8 and crop back (mean-coloured border) / RandomResizedCrop.
* "crop_flip": "crop" and a horizontal flip with probability 1/2.
* "autoaugment": "crop_flip", AutoAugment (CIFAR-10 / ImageNet policy; Cubuk et al. 2019) and,
  on in-memory images, Cutout (DeVries & Taylor 2017): the GML and MBIB CIFAR recipe.
* "randaugment": "crop_flip" and RandAugment with 2 ops at magnitude 10 of 10.
* "simclr": the SimCLR view (Chen et al. 2020): RandomResizedCrop, flip, colour jitter with
  probability 0.8, grayscale with probability 0.2 (and blur on file images): PaCo's key view.

The last three need the dataset's mean and std (:mod:`pipeline.data.augmentations`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as functional
from PIL import Image

from pipeline.data.augmentations import (
    apply_seeded,
    fill_colour,
    large_image_policy,
    policy_batch,
    policy_seeds,
)
from pipeline.data.names import AUGMENTATIONS, POLICY_AUGMENTATIONS
from pipeline.errors import PipelineError

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


def cutout(images: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """Blank one ``side`` x ``side`` square per image (Cutout, DeVries & Taylor 2017).

    The centre is uniform over the pixels, so the square may be clipped at the borders; it is
    filled with 0, the mean colour of normalised images.

    Args:
        images: float [B, C, H, W], normalised.
        side: side of the square in pixels.
        generator: CPU generator of the centres (rows first, then columns).

    Returns:
        float [B, C, H, W].
    """
    batch, _, height, width = images.shape
    centre_rows = torch.randint(0, height, (batch, 1), generator=generator).to(images.device)
    centre_cols = torch.randint(0, width, (batch, 1), generator=generator).to(images.device)
    rows = torch.arange(height, device=images.device)
    cols = torch.arange(width, device=images.device)
    in_rows = (rows >= centre_rows - side // 2) & (rows < centre_rows + side - side // 2)
    in_cols = (cols >= centre_cols - side // 2) & (cols < centre_cols + side - side // 2)
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    return images.masked_fill(hole, 0.0)


def augment_batch(
    images: torch.Tensor,
    augment: str,
    generator: torch.Generator,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Apply one of :data:`AUGMENTATIONS` to a batch, each image with its own random numbers.

    "crop" pads by ``max(1, H // 8)`` (4 pixels at 32x32, as in the CIFAR recipe) and crops
    back; "crop_flip" adds a horizontal flip; "autoaugment" and "randaugment" add their policy
    after the flip, and "autoaugment" a Cutout square of side ``max(1, H // 2)`` last;
    "simclr" is the SimCLR view (resized crop, flip, colour ops). The result is a function of
    the images and the generator's state alone; the global RNG is left as it was.

    Args:
        images: float [B, C, H, W], normalised, on any device.
        augment: one of :data:`AUGMENTATIONS`.
        generator: CPU generator of all random numbers.
        mean: C channel means of the normalisation, in [0, 1] pixel units; needed by
            "autoaugment", "randaugment" and "simclr", which work on pixels.
        std: C channel standard deviations of the normalisation, likewise.

    Returns:
        float [B, C, H, W] on the device of ``images``.

    Raises:
        PipelineError: ``augment`` is unknown.
        ValueError: a pixel policy without ``mean`` and ``std``.
    """
    check_augmentation(augment)
    if augment not in POLICY_AUGMENTATIONS:
        return _crop_flip(images, augment, generator)
    if mean is None or std is None:
        raise ValueError(f"augment '{augment}' works on pixels: pass the dataset's mean and std")
    return _policy_augment(images, augment, generator, mean, std)


def _crop_flip(images: torch.Tensor, augment: str, generator: torch.Generator) -> torch.Tensor:
    """Apply "none", "crop" or "crop_flip" to a normalised float [B, C, H, W] batch."""
    if augment == "none":
        return images
    images = random_crop(images, max(1, images.shape[2] // 8), generator)
    return images if augment == "crop" else random_flip(images, generator)


def _policy_augment(
    images: torch.Tensor,
    augment: str,
    generator: torch.Generator,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Apply "autoaugment", "randaugment" or "simclr" to a normalised float [B, C, H, W] batch."""
    if augment == "simclr":
        # The SimCLR view brings its own resized crop and flip.
        return policy_batch(images, augment, generator, mean, std)
    images = policy_batch(_crop_flip(images, "crop_flip", generator), augment, generator, mean, std)
    if augment == "autoaugment":
        images = cutout(images, max(1, images.shape[2] // 2), generator)
    return images


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
    centre ``image_size`` crop. Otherwise: a RandomResizedCrop to ``image_size``, a horizontal
    flip unless "crop", then the large-image policy of "autoaugment", "randaugment" or
    "simclr" (see :func:`pipeline.data.augmentations.large_image_policy`).

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
    # imported on use: torchvision costs seconds that every other command would pay
    from torchvision.transforms import functional as image_functional

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
        if augment != "crop" and torch.rand(1, generator=generator).item() < 0.5:
            image = image_functional.hflip(image)
        if augment in POLICY_AUGMENTATIONS:
            policy = large_image_policy(augment, image_size, fill_colour(mean))
            image = apply_seeded(policy, [image], policy_seeds(1, generator))[0]
    tensor = image_functional.to_tensor(image)
    return image_functional.normalize(tensor, list(mean), list(std))
