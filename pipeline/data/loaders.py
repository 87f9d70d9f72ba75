"""Batches of a split for training and feature dumping, replayable epoch by epoch.

Two backends behind one interface: in-memory datasets are normalised once into a tensor on
the target device and batched with tensor ops; file datasets stream through a DataLoader.
Either way, an epoch's order and augmentations are a pure function of (seed, epoch).

A training epoch can also carry extra views of every image (``epoch(e, views=...)``): each is
an independent augmentation of the raw image, drawn from its own random stream, as GML's
query and key views are (its official code applies a list of transforms to the raw image).
Asking for views never changes the main images of an epoch.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from core.devices import resolve_device
from pipeline.data.dataset_source import DatasetSource
from pipeline.data.randomness import (
    AUGMENT_STREAM,
    ORDER_STREAM,
    WORKER_STREAM,
    epoch_rng,
    epoch_torch_generator,
    view_stream,
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
        views: extra views of the same images, float32 [B, C, H, W] each, in the order they
            were asked for; every view is augmented from the raw image independently of
            ``images`` and of the other views (empty unless asked for).
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
    def epoch(self, epoch: int, views: Sequence[str | None] = ()) -> Iterator[Batch]:
        """The batches of epoch ``epoch``.

        Args:
            epoch: the epoch number (non-negative).
            views: one augmentation per extra view of each image (a name of
                :data:`~pipeline.data.transforms.AUGMENTATIONS`, or ``None`` for the loader's
                own augmentation); training loaders only. View ``v`` draws from its own
                stream of (seed, epoch), so the views are independent of each other and of
                the main images, and replay like them.

        Yields:
            :class:`Batch` objects on the loader's device.

        Raises:
            PipelineError: views asked of an evaluation loader, or an unknown augmentation.
        """

    def view_augmentations(self, views: Sequence[str | None]) -> tuple[str, ...]:
        """``views`` checked, with ``None`` replaced by the loader's own augmentation."""
        if views and not self.options.train:
            raise PipelineError(
                "an evaluation loader yields one unaugmented view per image: ask only a "
                "training loader for extra views"
            )
        augments = tuple(self.options.augment if view is None else view for view in views)
        for augment in augments:
            check_augmentation(augment)
        return augments

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

    def epoch(self, epoch: int, views: Sequence[str | None] = ()) -> Iterator[Batch]:
        options = self.options
        view_augments = self.view_augmentations(views)
        order = torch.from_numpy(self.epoch_order(epoch)).to(options.device)
        generator = epoch_torch_generator(options.seed, epoch, AUGMENT_STREAM)
        view_generators = [
            epoch_torch_generator(options.seed, epoch, view_stream(view))
            for view in range(len(view_augments))
        ]
        for batch in self.batch_slices(epoch):
            positions = order[batch]
            raw = self._images.index_select(0, positions)
            images = self._augment(raw, options.augment, generator) if options.train else raw
            # Every view starts from the raw images, never from another view.
            extra = tuple(
                self._augment(raw, augment, view_generator)
                for augment, view_generator in zip(view_augments, view_generators, strict=True)
            )
            yield Batch(
                images=images,
                labels=self._labels[positions],
                index=self._index[positions],
                views=extra,
            )

    def _augment(
        self, images: torch.Tensor, augment: str, generator: torch.Generator
    ) -> torch.Tensor:
        return augment_batch(images, augment, generator, mean=self._mean, std=self._std)


class ImageFileDataset(Dataset):
    """Images of a file pool, addressed by ``(position in the split, seed of its augmentation)``
    and, for extra views, ``(augmentation, seed)`` pairs after them.

    The seeds travel with the position so an image's augmentations do not depend on which
    worker loads it. An item is ``(image, label, index, views)``, ``views`` holding one tensor
    per extra pair, each made from the image as read from disk.
    """

    def __init__(self, source: DatasetSource, part: SplitPart, augment: str) -> None:
        pool = source.pools[part.pool]
        assert pool.paths is not None
        self.paths = [pool.paths[index] for index in part.indices]
        self.labels = pool.labels[part.indices].astype(np.int64)
        self.index = part.indices.astype(np.int64)
        self.image_size = source.image_size
        self.mean = source.mean
        self.std = source.std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(
        self, key: tuple[int, int, tuple[tuple[str, int], ...]]
    ) -> tuple[torch.Tensor, int, int, tuple[torch.Tensor, ...]]:
        position, sample_seed, view_draws = key
        raw = self._read(self.paths[position])
        image = self._tensor(raw, self.augment, sample_seed)
        views = tuple(self._tensor(raw, augment, seed) for augment, seed in view_draws)
        return image, int(self.labels[position]), int(self.index[position]), views

    def _tensor(self, image: Image.Image, augment: str, seed: int) -> torch.Tensor:
        generator = None if augment == "none" else torch.Generator().manual_seed(seed)
        return file_image_tensor(
            image,
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            augment=augment,
            generator=generator,
        )

    @staticmethod
    def _read(path: str) -> Image.Image:
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise PipelineError(
                f"`{path}` cannot be read as an image ({error}): replace it, or remove it from its "
                "split list or class folder"
            ) from error


class FileEpochLoader(EpochLoader):
    """Batches of a file pool through a torch DataLoader with ``num_workers`` workers."""

    def __init__(
        self, source: DatasetSource, part: SplitPart, options: LoaderOptions, num_workers: int
    ) -> None:
        super().__init__(source.pools[part.pool].labels[part.indices], options)
        self.num_workers = num_workers
        self._dataset = ImageFileDataset(source, part, options.augment if options.train else "none")

    def epoch(self, epoch: int, views: Sequence[str | None] = ()) -> Iterator[Batch]:
        options = self.options
        view_augments = self.view_augmentations(views)
        order = self.epoch_order(epoch)
        augment_rng = epoch_rng(options.seed, epoch, AUGMENT_STREAM)
        sample_seeds = augment_rng.integers(0, 2**63, size=len(order)).tolist()
        view_seeds = [
            epoch_rng(options.seed, epoch, view_stream(view)).integers(0, 2**63, size=len(order))
            for view in range(len(view_augments))
        ]
        seeds_of_image = zip(*view_seeds, strict=True) if view_seeds else [()] * len(order)
        keys = [
            (position, seed, tuple(zip(view_augments, map(int, image_seeds), strict=True)))
            for position, seed, image_seeds in zip(
                order.tolist(), sample_seeds, seeds_of_image, strict=True
            )
        ]
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
            for images, labels, index, extra in loader:
                yield Batch(
                    images=images.to(options.device, non_blocking=on_cuda),
                    labels=labels.to(options.device, non_blocking=on_cuda),
                    index=index.to(options.device, non_blocking=on_cuda),
                    views=tuple(view.to(options.device, non_blocking=on_cuda) for view in extra),
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

    Returns:
        An :class:`EpochLoader`.

    Raises:
        PipelineError: an unknown sampling or augmentation, a training-only option on an
            evaluation loader, a non-positive batch size or an unknown pool.
    """
    _check_options(
        source, part, batch_size=batch_size, train=train, sampling=sampling, augment=augment,
        rank=rank, world_size=world_size,
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
    )
    if source.pools[part.pool].in_memory:
        return TensorEpochLoader(source, part, options)
    return FileEpochLoader(source, part, options, num_workers)


def default_device() -> torch.device:
    """CUDA when present, else the CPU (`core.devices.resolve_device` of "auto")."""
    return resolve_device()


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
) -> None:
    if sampling not in SAMPLINGS:
        raise PipelineError(
            f"sampling: unknown sampler '{sampling}'; valid: {', '.join(SAMPLINGS)}"
        )
    check_augmentation(augment)
    if not train and (sampling, augment) != ("instance", "none"):
        raise PipelineError(
            f"an evaluation loader visits every image once, unaugmented: got sampling "
            f"'{sampling}' and augment '{augment}'; pass them to training loaders only"
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
