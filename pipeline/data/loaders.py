"""Batches of a split for training and feature dumping, replayable epoch by epoch.

Two backends behind one interface: in-memory datasets are normalised once into a tensor on
the target device and batched with tensor ops; file datasets stream through a DataLoader.
Either way, an epoch's order and augmentations are a pure function of (seed, epoch).

A training loader may also yield extra views of every image (``views``, e.g. PaCo's key
view): each is its own draw of an augmentation from the raw image, as the official two-view
code does (``transform(img), transform(img)``), never an augmentation of the query view, and
comes from a random stream of its own, so the query views are the same with or without them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from pipeline.data.dataset_source import DatasetSource
from pipeline.data.randomness import (
    AUGMENT_STREAM,
    ORDER_STREAM,
    VIEW_STREAM,
    WORKER_STREAM,
    epoch_rng,
    epoch_torch_generator,
)
from pipeline.data.samplers import class_balanced_indices, instance_indices
from pipeline.data.splits import SplitPart
from pipeline.data.transforms import (
    augment_batch,
    check_augmentation,
    file_image_tensor,
    normalised_tensor,
)
from pipeline.errors import PipelineError

SAMPLINGS: tuple[str, ...] = ("instance", "class_balanced")


@dataclass(frozen=True)
class Batch:
    """One batch of a split.

    Attributes:
        images: float32 [B, C, H, W], normalised.
        labels: int64 [B].
        index: int64 [B], position of each image in the split's pool (a SplitPart.indices value).
        views: one float32 [B, C, H, W] per extra view the loader was asked for (empty by
            default), each drawn from the raw images independently of ``images``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor
    views: tuple[torch.Tensor, ...] = ()


@dataclass(frozen=True)
class LoaderOptions:
    """How a loader walks its split (see :func:`make_loader` for each field)."""

    batch_size: int
    train: bool
    sampling: str
    augment: str
    seed: int
    device: torch.device
    rank: int = 0
    world_size: int = 1
    views: tuple[str, ...] = ()


class EpochLoader(ABC):
    """Iterates a split epoch by epoch; epoch ``e`` is the same whenever it is replayed.

    Training loaders shuffle (or class-balance) and augment; evaluation loaders visit the
    split in order, unaugmented, and drop nothing. The last batch may be smaller.

    A training loader of rank ``r`` of ``W`` data-parallel processes walks the same global
    order as every other rank and yields the ``r``-th of ``W`` equal slices of each global
    batch of ``batch_size``; the last ``N mod W`` samples of an epoch are dropped so that every
    rank gets batches of the same size (queues all-gather them, and equal slices make the
    averaged gradient the gradient of the global batch). A last batch of one image per rank is
    dropped from training epochs (BatchNorm cannot normalise a single sample).

    Attributes:
        labels: int64 [N], labels of the split.
        num_samples: images per epoch (N; class-balanced epochs draw N with replacement).
        options: batch size, sampling, augmentation, seed and device.
    """

    def __init__(self, labels: np.ndarray, options: LoaderOptions) -> None:
        self.labels = labels.astype(np.int64)
        self.num_samples = len(labels)
        self.options = options

    def __len__(self) -> int:
        return math.ceil(self._usable(self.num_samples) / self.options.batch_size)

    def _usable(self, count: int) -> int:
        """Samples of an epoch of ``count`` that the ranks can share equally.

        A training epoch also drops a last batch that would give a rank one single image:
        BatchNorm layers of projection heads cannot normalise one sample.
        """
        world = self.options.world_size
        usable = count - count % world
        last = usable % self.options.batch_size
        if self.options.train and last == world and usable > last:
            usable -= last
        return usable

    @abstractmethod
    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch ``epoch``.

        Args:
            epoch: the epoch number (non-negative).

        Yields:
            :class:`Batch` objects on the loader's device.
        """

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Positions in the split that epoch ``epoch`` visits, in order.

        Returns:
            int64 [num_samples].
        """
        if not self.options.train:
            return np.arange(self.num_samples, dtype=np.int64)
        rng = epoch_rng(self.options.seed, epoch, ORDER_STREAM)
        if self.options.sampling == "class_balanced":
            return class_balanced_indices(self.labels, self.num_samples, rng)
        return instance_indices(self.num_samples, rng)

    def batch_slices(self, epoch: int) -> Iterator[slice]:
        """This rank's slice of the epoch order, batch by batch.

        Yields:
            ``slice`` objects into ``epoch_order(epoch)``, one per batch.
        """
        size, world = self.options.batch_size, self.options.world_size
        usable = self._usable(self.num_samples)
        for start in range(0, usable, size):
            share = (min(start + size, usable) - start) // world
            first = start + self.options.rank * share
            yield slice(first, first + share)


class TensorEpochLoader(EpochLoader):
    """Batches of an in-memory pool: normalised once on the device, augmented batch-wise.

    The torchvision policies ("autoaugment", "randaugment", "simclr") run image by image on the
    CPU (see :func:`pipeline.data.augmentations.policy_batch`); the others stay on the device.
    """

    def __init__(self, source: DatasetSource, part: SplitPart, options: LoaderOptions) -> None:
        pool = source.pools[part.pool]
        assert pool.images is not None
        super().__init__(pool.labels[part.indices], options)
        device = options.device
        self._images = normalised_tensor(pool.images[part.indices], source.mean, source.std, device)
        self._mean = source.mean
        self._std = source.std
        self._labels = torch.from_numpy(self.labels).to(device)
        self._index = torch.from_numpy(part.indices.astype(np.int64)).to(device)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        options = self.options
        order = torch.from_numpy(self.epoch_order(epoch)).to(options.device)
        generator = epoch_torch_generator(options.seed, epoch, AUGMENT_STREAM)
        view_generator = epoch_torch_generator(options.seed, epoch, VIEW_STREAM)
        for batch in self.batch_slices(epoch):
            positions = order[batch]
            raw = self._images.index_select(0, positions)
            images = raw
            if options.train:
                images = augment_batch(raw, options.augment, generator, mean=self._mean,
                                       std=self._std)
            views = tuple(augment_batch(raw, view, view_generator, mean=self._mean, std=self._std)
                          for view in options.views)
            yield Batch(images=images, labels=self._labels[positions],
                        index=self._index[positions], views=views)


class ImageFileDataset(Dataset):
    """Images of a file pool, addressed by ``(position in the split, seed of its augmentation,
    seeds of its extra views)``.

    The seeds travel with the position so an image's augmentation does not depend on which
    worker loads it. Each extra view is its own draw from the image read from disk.
    """

    def __init__(
        self, source: DatasetSource, part: SplitPart, augment: str, views: tuple[str, ...] = ()
    ) -> None:
        pool = source.pools[part.pool]
        assert pool.paths is not None
        self.paths = [pool.paths[index] for index in part.indices]
        self.labels = pool.labels[part.indices].astype(np.int64)
        self.index = part.indices.astype(np.int64)
        self.image_size = source.image_size
        self.mean = source.mean
        self.std = source.std
        self.augment = augment
        self.views = views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, tuple[int, ...]]) -> tuple[Any, ...]:
        """``(image [3, S, S], label, index, *views)`` of one image, views each [3, S, S]."""
        position, sample_seed, view_seeds = key
        raw = self._read(self.paths[position])
        image = self._tensor(raw, self.augment, sample_seed)
        views = [self._tensor(raw, view, seed)
                 for view, seed in zip(self.views, view_seeds, strict=True)]
        return image, int(self.labels[position]), int(self.index[position]), *views

    def _tensor(self, image: Image.Image, augment: str, seed: int) -> torch.Tensor:
        generator = None if augment == "none" else torch.Generator().manual_seed(seed)
        return file_image_tensor(image, image_size=self.image_size, mean=self.mean,
                                 std=self.std, augment=augment, generator=generator)

    @staticmethod
    def _read(path: str) -> Image.Image:
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise PipelineError(
                f"`{path}` cannot be read as an image ({error}): replace it or drop it from its "
                "split list"
            ) from error


class FileEpochLoader(EpochLoader):
    """Batches of a file pool through a torch DataLoader with ``num_workers`` workers."""

    def __init__(
        self, source: DatasetSource, part: SplitPart, options: LoaderOptions, num_workers: int
    ) -> None:
        super().__init__(source.pools[part.pool].labels[part.indices], options)
        self.num_workers = num_workers
        augment = options.augment if options.train else "none"
        self._dataset = ImageFileDataset(source, part, augment, options.views)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        options = self.options
        order = self.epoch_order(epoch)
        augment_rng = epoch_rng(options.seed, epoch, AUGMENT_STREAM)
        sample_seeds = augment_rng.integers(0, 2**63, size=len(order))
        view_rng = epoch_rng(options.seed, epoch, VIEW_STREAM)
        view_seeds = view_rng.integers(0, 2**63, size=(len(order), len(options.views)))
        keys = [(position, seed, tuple(views)) for position, seed, views in zip(
            order.tolist(), sample_seeds.tolist(), view_seeds.tolist(), strict=True)]
        on_cuda = options.device.type == "cuda"
        loader = DataLoader(
            self._dataset,
            # Seeds follow the global position, so a rank augments an image exactly as a
            # single process would.
            batch_sampler=[keys[batch] for batch in self.batch_slices(epoch)],
            num_workers=self.num_workers,
            pin_memory=on_cuda,
            # Worker seeds derive from this generator; augmentation itself is seeded per image.
            generator=epoch_torch_generator(options.seed, epoch, WORKER_STREAM),
        )
        try:
            for images, labels, index, *views in loader:
                yield Batch(
                    images=images.to(options.device, non_blocking=on_cuda),
                    labels=labels.to(options.device, non_blocking=on_cuda),
                    index=index.to(options.device, non_blocking=on_cuda),
                    views=tuple(view.to(options.device, non_blocking=on_cuda) for view in views),
                )
        except PipelineError as error:
            raise PipelineError(_worker_message(error)) from None


def _worker_message(error: PipelineError) -> str:
    """The original one-line message of an error raised in a DataLoader worker.

    torch re-raises a worker's exception with the worker's traceback folded into the message;
    its last line is ``<module>.PipelineError: <message>``. In-process errors pass unchanged.
    """
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return str(error)
    return lines[-1].split("PipelineError: ", 1)[-1]


def make_loader(
    source: DatasetSource,
    part: SplitPart,
    *,
    batch_size: int,
    train: bool,
    sampling: str = "instance",
    augment: str = "none",
    seed: int = 0,
    device: torch.device | None = None,
    num_workers: int = 0,
    rank: int = 0,
    world_size: int = 1,
    views: Sequence[str] = (),
) -> EpochLoader:
    """A loader over one split of a dataset.

    Args:
        source: the dataset.
        part: the split to iterate.
        batch_size: B, images per batch.
        train: shuffle and augment (True), or visit in order unaugmented (False).
        sampling: "instance" (each image once per epoch) or "class_balanced" (training only).
        augment: one of :data:`pipeline.data.transforms.AUGMENTATIONS` (training only).
        seed: seed of every epoch's order and augmentation.
        device: where batches go; CUDA when available if ``None``.
        num_workers: DataLoader workers for file pools (in-memory pools need none).
        rank: this process's data-parallel rank (training loaders only).
        world_size: data-parallel processes; each rank yields its slice of every batch.
        views: augmentations of extra views of every image (training only), each drawn from
            the raw image independently of the query view and of each other, into
            ``Batch.views`` (a method's ``view_augments()``, e.g. PaCo's key view).

    Returns:
        An :class:`EpochLoader`.

    Raises:
        PipelineError: an unknown sampling or augmentation, a training-only option on an
            evaluation loader, a non-positive batch size or an unknown pool.
    """
    views = tuple(views)
    _check_options(
        source, part, batch_size=batch_size, train=train, sampling=sampling, augment=augment,
        rank=rank, world_size=world_size, views=views,
    )
    options = LoaderOptions(
        batch_size=batch_size,
        train=train,
        sampling=sampling,
        augment=augment,
        seed=seed,
        device=device or default_device(),
        rank=rank,
        world_size=world_size,
        views=views,
    )
    if source.pools[part.pool].in_memory:
        return TensorEpochLoader(source, part, options)
    return FileEpochLoader(source, part, options, num_workers)


def default_device() -> torch.device:
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_options(
    source: DatasetSource,
    part: SplitPart,
    *,
    batch_size: int,
    train: bool,
    sampling: str,
    augment: str,
    rank: int = 0,
    world_size: int = 1,
    views: tuple[str, ...] = (),
) -> None:
    if sampling not in SAMPLINGS:
        raise PipelineError(
            f"sampling: unknown sampler '{sampling}'; valid: {', '.join(SAMPLINGS)}"
        )
    for name in (augment, *views):
        check_augmentation(name)
    if not train and (sampling, augment, views) != ("instance", "none", ()):
        raise PipelineError(
            f"an evaluation loader visits every image once, unaugmented: got sampling "
            f"'{sampling}', augment '{augment}' and views {list(views)}; pass them to training "
            "loaders only"
        )
    if batch_size < 1:
        raise PipelineError(f"batch_size is {batch_size}: it must be at least 1")
    if not 0 <= rank < world_size:
        raise PipelineError(f"rank {rank} is outside the {world_size} data-parallel processes")
    if world_size > 1 and not train:
        raise PipelineError("only training loaders are split across ranks; pass world_size=1")
    if batch_size % world_size:
        raise PipelineError(
            f"batch_size {batch_size} is not divisible by the {world_size} processes; "
            "set train.batch_size to a multiple of the number of processes"
        )
    if part.pool not in source.pools:
        raise PipelineError(
            f"split uses pool '{part.pool}' but {source.name} has pools "
            f"{', '.join(source.pools)}: make the splits again for this dataset"
        )
