"""AutoAugment, RandAugment and SimCLR views: seeded, per image, leaving the global RNG alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.augmentations import policy_batch
from pipeline.data.dataset_source import DatasetSource
from pipeline.data.loaders import EpochLoader, make_loader
from pipeline.data.longtail import make_splits
from pipeline.data.names import POLICY_AUGMENTATIONS
from pipeline.data.randomness import AUGMENT_STREAM, epoch_torch_generator
from pipeline.data.sources import load_source
from pipeline.data.splits import SplitPart
from pipeline.data.transforms import (
    AUGMENTATIONS,
    augment_batch,
    cutout,
    file_image_tensor,
    normalised_tensor,
)
from tests.pipeline.data.standins import write_list_standin

CPU = torch.device("cpu")
AUGMENTED = tuple(name for name in AUGMENTATIONS if name != "none")
# A mean of 127.5 / 255 is no uint8 pixel, so an exact 0 after normalisation can only be Cutout.
HALF_GREY = 0.5
STATS = {1: ((HALF_GREY,), (0.25,)), 3: ((HALF_GREY,) * 3, (0.25, 0.3, 0.2))}


def _images(batch: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Normalised float [batch, channels, size, size] from random uint8 pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, (batch, size, size, channels), np.uint8)
    mean, std = STATS[channels]
    return normalised_tensor(pixels, mean, std, CPU)


def _augment(images: torch.Tensor, augment: str, generator: torch.Generator) -> torch.Tensor:
    mean, std = STATS[images.shape[1]]
    return augment_batch(images, augment, generator, mean=mean, std=std)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return epoch_torch_generator(seed, epoch, AUGMENT_STREAM)


def test_the_new_names_are_offered_and_the_old_ones_kept() -> None:
    assert AUGMENTATIONS[:3] == ("none", "crop", "crop_flip")
    assert set(POLICY_AUGMENTATIONS) <= set(AUGMENTATIONS)


@pytest.mark.parametrize("augment", AUGMENTED)
@pytest.mark.parametrize(("channels", "size"), [(3, 16), (1, 8)])
def test_every_name_keeps_shape_and_dtype_and_changes_the_images(
    augment: str, channels: int, size: int
) -> None:
    images = _images(6, channels, size)
    augmented = _augment(images, augment, _epoch_generator(0, 0))
    assert augmented.shape == images.shape and augmented.dtype == images.dtype
    assert augmented.isfinite().all() and not torch.equal(augmented, images)


@pytest.mark.parametrize("augment", AUGMENTED)
def test_every_name_replays_its_epoch_and_differs_across_epochs(augment: str) -> None:
    images = _images(6, 3, 16)
    epoch_two = _augment(images, augment, _epoch_generator(5, 2))
    torch.testing.assert_close(
        epoch_two, _augment(images, augment, _epoch_generator(5, 2)), rtol=0, atol=0
    )
    assert not torch.equal(epoch_two, _augment(images, augment, _epoch_generator(5, 3)))


@pytest.mark.parametrize("augment", POLICY_AUGMENTATIONS)
def test_policies_neither_read_nor_move_the_global_rng(augment: str) -> None:
    images = _images(4, 3, 16)
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        results.append(_augment(images, augment, _epoch_generator(0, 0)))
        assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("augment", ["autoaugment", "randaugment", "simclr"])
def test_policies_draw_their_own_operations_for_every_image(augment: str) -> None:
    # One image sixteen times: a policy applied to the whole batch at once would return
    # sixteen copies of one result.
    images = _images(1, 3, 16).repeat(16, 1, 1, 1)
    mean, std = STATS[3]
    augmented = policy_batch(images, augment, _epoch_generator(0, 0), mean, std)
    assert len({tuple(image.flatten().tolist()) for image in augmented}) >= 8


def test_cutout_blanks_the_clipped_square_around_each_drawn_centre() -> None:
    images = torch.ones(64, 2, 10, 12)
    blanked = cutout(images, 4, torch.Generator().manual_seed(3))
    draws = torch.Generator().manual_seed(3)
    centre_rows = torch.randint(0, 10, (64, 1), generator=draws).flatten().tolist()
    centre_cols = torch.randint(0, 12, (64, 1), generator=draws).flatten().tolist()
    for image, (row, col) in enumerate(zip(centre_rows, centre_cols, strict=True)):
        expected = torch.ones(2, 10, 12)
        expected[:, max(0, row - 2) : row + 2, max(0, col - 2) : col + 2] = 0
        assert torch.equal(blanked[image], expected)
    holes = (blanked[:, 0] == 0).flatten(1).sum(1)
    assert int(holes.max()) == 16 and int(holes.min()) >= 4


def test_autoaugment_ends_with_a_half_side_cutout_filled_with_the_mean() -> None:
    images = _images(32, 3, 16)
    augmented = _augment(images, "autoaugment", _epoch_generator(0, 0))
    zeros = augmented == 0
    # The hole covers every channel; side 8 at 16x16, at least its clipped quarter at a corner.
    assert torch.equal(zeros.all(1), zeros.any(1))
    hole_sizes = zeros[:, 0].flatten(1).sum(1)
    assert int(hole_sizes.min()) >= 16 and int(hole_sizes.max()) == 64
    assert all(_is_rectangle(hole) for hole in zeros[:, 0])


def _is_rectangle(mask: torch.Tensor) -> bool:
    rows = mask.any(1).nonzero().flatten()
    cols = mask.any(0).nonzero().flatten()
    box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return bool(box.all()) and int(box.sum()) == int(mask.sum())


def test_pixel_policies_without_the_normalisation_are_refused() -> None:
    with pytest.raises(ValueError, match="mean and std"):
        augment_batch(_images(2, 3, 8), "simclr", _epoch_generator(0, 0))


def test_crop_flip_without_the_normalisation_still_works() -> None:
    images = _images(4, 3, 8)
    augmented = augment_batch(images, "crop_flip", _epoch_generator(0, 0))
    assert augmented.shape == images.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("augment", POLICY_AUGMENTATIONS)
def test_cuda_batches_get_the_cpu_augmentations(augment: str) -> None:
    images = _images(8, 3, 16)
    on_cpu = _augment(images, augment, _epoch_generator(0, 0))
    on_cuda = _augment(images.cuda(), augment, _epoch_generator(0, 0))
    assert on_cuda.device.type == "cuda"
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-5)


@pytest.mark.parametrize("augment", POLICY_AUGMENTATIONS)
def test_in_memory_loader_accepts_the_policies(digits_source: DatasetSource, augment: str) -> None:
    splits = make_splits(
        digits_source,
        imbalance_factor=20,
        val_per_class=10,
        test_per_class=40,
        max_per_class=None,
        seed=0,
    )

    def first_batch(epoch: int) -> torch.Tensor:
        loader = make_loader(
            digits_source,
            splits.train,
            batch_size=32,
            train=True,
            augment=augment,
            seed=4,
            device=CPU,
        )
        return next(loader.epoch(epoch)).images

    epoch_one = first_batch(1)
    assert epoch_one.shape == (32, 1, 8, 8)
    assert torch.equal(epoch_one, first_batch(1)) and not torch.equal(epoch_one, first_batch(2))


@pytest.fixture
def file_source(tmp_path: Path) -> DatasetSource:
    lists = {pool: f"ImageNet_LT_{pool}.txt" for pool in ("train", "val", "test")}
    write_list_standin(tmp_path, lists, per_pool=6)
    source = load_source("imagenet_lt", tmp_path)
    return DatasetSource(**{**source.__dict__, "image_size": 16})


@pytest.mark.parametrize("augment", POLICY_AUGMENTATIONS)
def test_file_loader_accepts_the_policies(file_source: DatasetSource, augment: str) -> None:
    part = SplitPart("train", np.arange(6, dtype=np.int64))

    def loader() -> EpochLoader:
        return make_loader(
            file_source, part, batch_size=3, train=True, augment=augment, seed=2, device=CPU
        )

    first = next(loader().epoch(0)).images
    assert first.shape == (3, 3, 16, 16) and first.dtype == torch.float32
    assert torch.equal(first, next(loader().epoch(0)).images)
    assert not torch.equal(first, next(loader().epoch(1)).images)


@pytest.mark.parametrize("augment", POLICY_AUGMENTATIONS)
def test_file_image_policies_are_seeded_per_image(augment: str) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8))
    options = {"image_size": 16, "mean": (0.5,) * 3, "std": (0.5,) * 3, "augment": augment}
    state = torch.get_rng_state()
    views = [
        file_image_tensor(image, generator=torch.Generator().manual_seed(seed), **options)
        for seed in (7, 7, 8)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    assert views[0].shape == (3, 16, 16) and views[0].dtype == torch.float32
    assert torch.equal(views[0], views[1]) and not torch.equal(views[0], views[2])
