"""Epoch loaders over in-memory and file pools: shapes, order, replay, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.loaders import Batch, EpochLoader, make_loader
from pipeline.data.longtail import make_splits
from pipeline.data.randomness import VIEW_STREAM, epoch_torch_generator
from pipeline.data.sources import load_source
from pipeline.data.splits import SplitPart, Splits
from pipeline.data.transforms import augment_batch
from pipeline.errors import PipelineError
from tests.pipeline.data.standins import write_list_standin

CPU = torch.device("cpu")


@pytest.fixture
def digits_splits(digits_source: DatasetSource) -> Splits:
    return make_splits(
        digits_source,
        imbalance_factor=20,
        val_per_class=10,
        test_per_class=40,
        max_per_class=None,
        seed=0,
    )


def _collect(loader: EpochLoader, epoch: int) -> list[Batch]:
    return list(loader.epoch(epoch))


def _assert_same_batches(first: list[Batch], second: list[Batch]) -> None:
    assert len(first) == len(second)
    for one, other in zip(first, second, strict=True):
        assert torch.equal(one.images, other.images) and torch.equal(one.index, other.index)
        assert torch.equal(one.labels, other.labels)


def test_eval_loader_visits_the_split_in_order_unaugmented(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    loader = make_loader(digits_source, digits_splits.test, batch_size=64, train=False, device=CPU)
    batches = _collect(loader, 0)
    assert len(loader) == len(batches) == 7 and len(batches[-1].labels) == 400 - 6 * 64
    index = torch.cat([batch.index for batch in batches]).numpy()
    np.testing.assert_array_equal(index, digits_splits.test.indices)
    pool = digits_source.pools["all"]
    first = batches[0]
    assert first.images.shape == (64, 1, 8, 8) and first.images.dtype == torch.float32
    np.testing.assert_array_equal(first.labels.numpy(), pool.labels[first.index.numpy()])
    expected = (pool.images[int(first.index[0])][..., 0] / 255 - 0.3053) / 0.3759
    np.testing.assert_allclose(first.images[0, 0].numpy(), expected, rtol=1e-5)
    _assert_same_batches(batches, _collect(loader, 9))


def test_training_epochs_replay_and_differ(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    def loader() -> EpochLoader:
        return make_loader(
            digits_source,
            digits_splits.train,
            batch_size=32,
            train=True,
            augment="crop_flip",
            seed=7,
            device=CPU,
        )

    first = loader()
    epoch_three = _collect(first, 3)
    _assert_same_batches(epoch_three, _collect(loader(), 3))
    other_epoch = _collect(first, 4)
    assert not torch.equal(epoch_three[0].index, other_epoch[0].index)
    index = torch.cat([batch.index for batch in epoch_three]).numpy()
    train = digits_splits.train.indices.tolist()
    # each image at most once; only a last batch of a single image is dropped
    assert len(set(index.tolist())) == len(index) and set(index.tolist()) <= set(train)
    assert len(index) == len(train) - (len(train) % 32 == 1)


def test_training_loader_depends_on_its_seed(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    first, second = (
        make_loader(
            digits_source, digits_splits.train, batch_size=32, train=True, seed=seed, device=CPU
        )
        for seed in (0, 1)
    )
    assert not torch.equal(next(first.epoch(0)).index, next(second.epoch(0)).index)


def _raw_images(source: DatasetSource, part: SplitPart, index: torch.Tensor) -> torch.Tensor:
    """The un-augmented images of ``index`` (positions in the pool), as the eval loader gives."""
    batches = _collect(make_loader(source, part, batch_size=1024, train=False, device=CPU), 0)
    images = torch.cat([batch.images for batch in batches])
    row = {int(position): row for row, position in enumerate(torch.cat([b.index for b in batches]))}
    return images[[row[int(position)] for position in index]]


def test_views_are_independent_draws_from_the_raw_images(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    """PaCo's key view: its own draw of an augmentation from the raw image (the official
    ``transform(img), transform(img)``), never an augmentation of the query view."""

    def loader(views: tuple[str, ...] = ()) -> EpochLoader:
        return make_loader(digits_source, digits_splits.train, batch_size=32, train=True,
                           augment="crop", seed=7, device=CPU, views=views)

    plain, with_views = _collect(loader(), 2), _collect(loader(("none", "crop")), 2)
    _assert_same_batches(plain, with_views)  # asking for views leaves the queries as they were
    view_stream = epoch_torch_generator(7, 2, VIEW_STREAM)
    differs = []
    for batch in with_views:
        raw = _raw_images(digits_source, digits_splits.train, batch.index)
        raw_view, crop_view = batch.views
        assert torch.equal(raw_view, raw) and not torch.equal(batch.images, raw)
        assert torch.equal(crop_view, augment_batch(raw, "crop", view_stream))
        differs.append((crop_view != batch.images).flatten(1).any(1))
    # two independent crops of a 1-pixel pad agree on 1 image in 9 by chance
    assert 0.75 < torch.cat(differs).float().mean() < 0.98
    assert all(len(batch.views) == 0 for batch in plain)


def test_views_replay_for_a_seed_and_change_with_the_epoch(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    def views(seed: int, epoch: int) -> torch.Tensor:
        loader = make_loader(digits_source, digits_splits.train, batch_size=32, train=True,
                             augment="crop_flip", seed=seed, device=CPU, views=("crop_flip",))
        return torch.cat([batch.views[0] for batch in loader.epoch(epoch)])

    assert torch.equal(views(7, 3), views(7, 3))
    assert not torch.equal(views(7, 3), views(7, 4)) and not torch.equal(views(7, 3), views(8, 3))


def test_class_balanced_training_evens_out_the_classes(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    loader = make_loader(
        digits_source,
        digits_splits.train,
        batch_size=50,
        train=True,
        sampling="class_balanced",
        device=CPU,
    )
    labels = torch.cat([batch.labels for epoch in range(20) for batch in loader.epoch(epoch)])
    share = torch.bincount(labels, minlength=10).float() / len(labels)
    assert loader.num_samples == len(digits_splits.train)
    assert float(share.min()) > 0.07 and float(share.max()) < 0.13


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"train": True, "sampling": "square_root"}, "unknown sampler 'square_root'"),
        ({"train": True, "augment": "mixup"}, "unknown augmentation 'mixup'"),
        ({"train": False, "sampling": "class_balanced"}, "evaluation loader"),
        ({"train": False, "augment": "crop"}, "evaluation loader"),
        ({"train": True, "batch_size": 0}, "batch_size is 0"),
        ({"train": True, "views": ("crop", "cutmix")}, "unknown augmentation 'cutmix'"),
        ({"train": False, "views": ("crop",)}, "evaluation loader"),
    ],
)
def test_bad_options_are_rejected(
    digits_source: DatasetSource, digits_splits: Splits, options: dict, message: str
) -> None:
    with pytest.raises(PipelineError, match=message):
        make_loader(digits_source, digits_splits.val, **{"batch_size": 8, **options})


def test_unknown_pool_is_rejected(digits_source: DatasetSource) -> None:
    part = SplitPart("train", np.arange(3, dtype=np.int64))
    with pytest.raises(PipelineError, match="pool 'train'"):
        make_loader(digits_source, part, batch_size=8, train=False)


@pytest.fixture
def file_source(tmp_path: Path) -> DatasetSource:
    lists = {pool: f"ImageNet_LT_{pool}.txt" for pool in ("train", "val", "test")}
    write_list_standin(tmp_path, lists, per_pool=10)
    source = load_source("imagenet_lt", tmp_path)
    # Small images keep the test fast; the pipeline is the same at 224.
    return DatasetSource(**{**source.__dict__, "image_size": 16})


def test_file_loader_eval_batches(file_source: DatasetSource) -> None:
    part = SplitPart("val", np.array([1, 4, 7], dtype=np.int64))
    batches = _collect(make_loader(file_source, part, batch_size=2, train=False, device=CPU), 0)
    assert [batch.images.shape for batch in batches] == [(2, 3, 16, 16), (1, 3, 16, 16)]
    assert torch.cat([batch.index for batch in batches]).tolist() == [1, 4, 7]
    assert torch.cat([batch.labels for batch in batches]).tolist() == [1, 0, 3]


def test_file_loader_epochs_replay_whatever_the_workers(file_source: DatasetSource) -> None:
    part = SplitPart("train", np.arange(10, dtype=np.int64))

    def loader(num_workers: int) -> EpochLoader:
        return make_loader(
            file_source,
            part,
            batch_size=4,
            train=True,
            augment="crop_flip",
            seed=3,
            device=CPU,
            num_workers=num_workers,
        )

    in_process = _collect(loader(0), 1)
    assert len(in_process) == 3
    _assert_same_batches(in_process, _collect(loader(0), 1))
    _assert_same_batches(in_process, _collect(loader(2), 1))
    assert not torch.equal(in_process[0].images, _collect(loader(0), 2)[0].images)


def test_file_views_are_their_own_draws_from_the_file_image(file_source: DatasetSource) -> None:
    part = SplitPart("train", np.arange(10, dtype=np.int64))

    def loader(num_workers: int) -> EpochLoader:
        return make_loader(file_source, part, batch_size=4, train=True, augment="crop_flip",
                           seed=3, device=CPU, num_workers=num_workers,
                           views=("none", "crop_flip"))

    batches = _collect(loader(0), 1)
    plain = _collect(make_loader(file_source, part, batch_size=4, train=True,
                                 augment="crop_flip", seed=3, device=CPU), 1)
    _assert_same_batches(plain, batches)
    for batch in batches:
        raw_view, crop_view = batch.views
        assert torch.equal(raw_view, _raw_images(file_source, part, batch.index))
        assert crop_view.shape == batch.images.shape
        assert not torch.equal(crop_view, batch.images) and not torch.equal(crop_view, raw_view)
    with_workers = _collect(loader(2), 1)
    for one, other in zip(batches, with_workers, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(one.views, other.views, strict=True))


def test_unreadable_image_names_the_file(file_source: DatasetSource) -> None:
    broken = Path(file_source.pools["test"].paths[2])  # type: ignore[index]
    broken.write_bytes(b"not a png")
    part = SplitPart("test", np.arange(4, dtype=np.int64))
    for workers in (0, 2):
        loader = make_loader(
            file_source, part, batch_size=4, train=False, device=CPU, num_workers=workers
        )
        with pytest.raises(PipelineError, match=r"2\.png") as caught:
            _collect(loader, 0)
        # a worker's traceback is folded away: the same one line as in-process
        assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


@pytest.mark.parametrize("sampling", ["instance", "class_balanced"])
def test_ranks_split_every_global_batch_into_equal_slices(
    digits_source: DatasetSource, digits_splits: Splits, sampling: str
) -> None:
    def loader(rank: int, world_size: int) -> EpochLoader:
        return make_loader(
            digits_source, digits_splits.train, batch_size=15, train=True, sampling=sampling,
            seed=4, device=CPU, rank=rank, world_size=world_size,
        )

    single = _collect(loader(0, 1), 2)
    ranks = [_collect(loader(rank, 3), 2) for rank in range(3)]
    usable = len(digits_splits.train.indices) // 3 * 3
    assert len(loader(0, 3)) == len(ranks[0]) == -(-usable // 15)
    whole = torch.cat([batch.index for batch in single])
    for step, slices in enumerate(zip(*ranks, strict=True)):
        sizes = {len(part.index) for part in slices}
        assert len(sizes) == 1, f"batch {step}: ranks got unequal slices {sizes}"
        joined = torch.cat([part.index for part in slices])
        assert torch.equal(joined, whole[step * 15 : step * 15 + len(joined)])
    assert sum(len(batch.index) for rank in ranks for batch in rank) == usable


def test_file_loader_rank_slices_augment_like_one_process(file_source: DatasetSource) -> None:
    part = SplitPart("train", np.arange(10, dtype=np.int64))

    def loader(rank: int, world_size: int) -> EpochLoader:
        return make_loader(
            file_source, part, batch_size=6, train=True, augment="crop_flip", seed=3,
            device=CPU, rank=rank, world_size=world_size,
        )

    single = _collect(loader(0, 1), 1)
    first, second = _collect(loader(0, 2), 1), _collect(loader(1, 2), 1)
    joined = torch.cat([torch.cat([a.images, b.images]) for a, b in zip(first, second, strict=True)])
    assert torch.equal(joined, torch.cat([batch.images for batch in single]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rank": 2, "world_size": 2}, "rank 2 is outside"),
        ({"batch_size": 9, "world_size": 2}, "not divisible by the 2 processes"),
        ({"train": False, "world_size": 2}, "only training loaders"),
    ],
)
def test_bad_rank_options_are_rejected(
    digits_source: DatasetSource, digits_splits: Splits, options: dict, message: str
) -> None:
    with pytest.raises(PipelineError, match=message):
        make_loader(digits_source, digits_splits.train, **{"batch_size": 8, "train": True, **options})


def test_training_drops_a_last_batch_of_one_image(digits_source: DatasetSource) -> None:
    part = SplitPart("all", np.arange(33, dtype=np.int64))
    train = make_loader(digits_source, part, batch_size=16, train=True, device=CPU)
    assert [len(batch.labels) for batch in train.epoch(0)] == [16, 16] and len(train) == 2
    evaluation = make_loader(digits_source, part, batch_size=16, train=False, device=CPU)
    assert [len(batch.labels) for batch in evaluation.epoch(0)] == [16, 16, 1]
