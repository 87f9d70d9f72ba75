"""Batched crop and flip, and the file-image pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.transforms import (
    augment_batch,
    file_image_tensor,
    inception_crop_box,
    normalised_tensor,
    random_crop,
    random_flip,
)
from pipeline.errors import PipelineError


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_normalised_tensor_is_channel_first_and_normalised() -> None:
    images = np.zeros((2, 3, 4, 2), dtype=np.uint8)
    images[..., 1] = 255
    tensor = normalised_tensor(images, (0.5, 0.5), (0.5, 0.25), torch.device("cpu"))
    assert tensor.shape == (2, 2, 3, 4) and tensor.dtype == torch.float32
    assert torch.all(tensor[:, 0] == -1) and torch.all(tensor[:, 1] == 2)


def test_random_crop_equals_a_per_image_slice_of_the_padded_batch() -> None:
    images = torch.randn(6, 2, 8, 8, generator=_generator(0))
    cropped = random_crop(images, 2, _generator(1))
    offsets = _generator(1)
    tops = torch.randint(0, 5, (6,), generator=offsets)
    lefts = torch.randint(0, 5, (6,), generator=offsets)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for image, (top, left) in enumerate(zip(tops.tolist(), lefts.tolist(), strict=True)):
        expected = padded[image, :, top : top + 8, left : left + 8]
        torch.testing.assert_close(cropped[image], expected, rtol=0, atol=0)


def test_random_crop_offsets_differ_across_the_batch() -> None:
    images = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    cropped = random_crop(images, 1, _generator(0))
    assert len({tuple(image.flatten().tolist()) for image in cropped}) > 1


def test_random_flip_mirrors_about_half_of_the_images() -> None:
    images = torch.randn(400, 1, 4, 4, generator=_generator(0))
    flipped = random_flip(images, _generator(1))
    mirrored = (flipped == images.flip(3)).flatten(1).all(1)
    unchanged = (flipped == images).flatten(1).all(1)
    assert torch.all(mirrored | unchanged) and 150 < int(mirrored.sum()) < 250


def test_augment_batch_none_is_identity_and_crop_flip_is_seeded() -> None:
    images = torch.randn(5, 3, 8, 8, generator=_generator(0))
    assert augment_batch(images, "none", _generator(0)) is images
    first = augment_batch(images, "crop_flip", _generator(2))
    again = augment_batch(images, "crop_flip", _generator(2))
    assert first.shape == images.shape and torch.equal(first, again)


def test_unknown_augmentation_lists_the_choices() -> None:
    with pytest.raises(PipelineError, match="none, crop, crop_flip"):
        augment_batch(torch.zeros(1, 1, 2, 2), "mixup", _generator(0))


@pytest.mark.parametrize(("width", "height"), [(40, 30), (300, 20), (20, 300)])
def test_inception_crop_box_stays_inside_the_image(width: int, height: int) -> None:
    generator = _generator(0)
    for _ in range(50):
        top, left, crop_height, crop_width = inception_crop_box(width, height, generator)
        assert 0 <= top and top + crop_height <= height and crop_height > 0
        assert 0 <= left and left + crop_width <= width and crop_width > 0


def test_file_image_tensor_eval_and_train_shapes() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))
    options = {"image_size": 16, "mean": (0.5,) * 3, "std": (0.5,) * 3}
    evaluated = file_image_tensor(image, augment="none", generator=None, **options)
    trained = file_image_tensor(image, augment="crop_flip", generator=_generator(3), **options)
    again = file_image_tensor(image, augment="crop_flip", generator=_generator(3), **options)
    assert evaluated.shape == trained.shape == (3, 16, 16)
    assert torch.equal(trained, again) and evaluated.min() >= -1 and evaluated.max() <= 1
