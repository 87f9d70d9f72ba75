"""Epoch loaders over in-memory and file pools: shapes, order, replay, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.loaders import Batch, EpochLoader, make_loader
from pipeline.data.longtail import make_splits
from pipeline.data.sources import load_source
from pipeline.data.splits import SplitPart, Splits
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


def _crop_offsets(view: torch.Tensor, raw: torch.Tensor) -> list[tuple[int, int]]:
    """Offsets (top, left) of the pad-by-one crops of ``raw`` [C, H, W] that equal ``view``."""
    height, width = raw.shape[1:]
    padded = torch.nn.functional.pad(raw, (1, 1, 1, 1))
    return [(top, left) for top in range(3) for left in range(3)
            if torch.equal(padded[:, top : top + height, left : left + width], view)]


def test_extra_views_are_independent_draws_of_the_raw_image(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    """GML's query and key views (official code: a list of transforms, each applied to the
    raw image): every view is one crop of the raw image, its offset independent of the main
    image's and of the other view's, and asking for views leaves the main images alone."""
    def loader() -> EpochLoader:
        return make_loader(digits_source, digits_splits.train, batch_size=64, train=True,
                           augment="crop", seed=2, device=CPU)

    without_views = _collect(loader(), 0)
    assert all(batch.views == () for batch in without_views)
    with_views = list(loader().epoch(0, views=(None, "crop")))
    _assert_same_batches(with_views, without_views)
    raw_loader = make_loader(digits_source, digits_splits.train, batch_size=1000, train=False,
                             device=CPU)
    raw_batch = next(iter(raw_loader.epoch(0)))
    raw_of = {int(i): image for i, image in zip(raw_batch.index, raw_batch.images, strict=True)}
    offsets = []  # (main, view 0, view 1) crop offsets of every image
    for batch in with_views:
        assert len(batch.views) == 2 and all(v.shape == batch.images.shape for v in batch.views)
        for row, sample in enumerate(batch.index.tolist()):
            found = [_crop_offsets(image[row], raw_of[sample])
                     for image in (batch.images, *batch.views)]
            assert all(len(matches) == 1 for matches in found), (sample, found)
            offsets.append([matches[0] for matches in found])
    # Independent uniform draws over 9 offsets agree about 1 time in 9.
    for first, second in ((0, 1), (0, 2), (1, 2)):
        agree = np.mean([image[first] == image[second] for image in offsets])
        assert 0.03 < agree < 0.25, (first, second, agree)
    replayed = list(loader().epoch(0, views=(None, "crop")))
    for one, other in zip(with_views, replayed, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(one.views, other.views, strict=True))
    next_epoch = next(iter(loader().epoch(1, views=(None, "crop"))))
    assert not torch.equal(next_epoch.views[0], with_views[0].views[0])


def test_file_loader_views_replay_whatever_the_workers(file_source: DatasetSource) -> None:
    part = SplitPart("train", np.arange(10, dtype=np.int64))

    def batches(num_workers: int, views: tuple[str | None, ...]) -> list[Batch]:
        loader = make_loader(file_source, part, batch_size=4, train=True, augment="crop_flip",
                             seed=3, device=CPU, num_workers=num_workers)
        return list(loader.epoch(1, views=views))

    in_process = batches(0, (None, "crop"))
    _assert_same_batches(in_process, batches(0, ()))
    for one, other in zip(in_process, batches(2, (None, "crop")), strict=True):
        assert len(one.views) == 2
        assert all(torch.equal(a, b) for a, b in zip(one.views, other.views, strict=True))
        assert not torch.equal(one.views[0], one.images)
        assert not torch.equal(one.views[0], one.views[1])


def test_views_are_refused_where_they_make_no_sense(
    digits_source: DatasetSource, digits_splits: Splits
) -> None:
    evaluation = make_loader(digits_source, digits_splits.val, batch_size=8, train=False)
    with pytest.raises(PipelineError, match="evaluation loader yields one unaugmented view"):
        next(iter(evaluation.epoch(0, views=(None,))))
    training = make_loader(digits_source, digits_splits.train, batch_size=8, train=True)
    with pytest.raises(PipelineError, match="unknown augmentation 'mixup'"):
        next(iter(training.epoch(0, views=("mixup",))))
