"""The in-memory description of a dataset: its pools of images and how to normalise them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImagePool:
    """All images of one pool of a dataset (e.g. the official train set).

    Exactly one of ``images`` and ``paths`` is set: small datasets live in memory, large ones
    are read from disk batch by batch.

    Attributes:
        labels: int64 [N], the class of each image.
        images: uint8 [N, H, W, C] for in-memory datasets, else ``None``.
        paths: N absolute image paths for list datasets, else ``None``.
    """

    labels: np.ndarray
    images: np.ndarray | None = None
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if (self.images is None) == (self.paths is None):
            raise ValueError("an ImagePool holds either in-memory images or image paths")
        if len(self._content()) != len(self.labels):
            raise ValueError(
                f"an ImagePool needs one label per image: {len(self._content())} images, "
                f"{len(self.labels)} labels"
            )

    def _content(self) -> np.ndarray | tuple[str, ...]:
        return self.images if self.images is not None else self.paths  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        """Whether the pixels are held in memory (``images``) rather than on disk (``paths``)."""
        return self.images is not None


@dataclass(frozen=True)
class DatasetSource:
    """A dataset as the rest of the pipeline sees it.

    Attributes:
        name: one of :data:`pipeline.data.sources.DATASETS`.
        num_classes: C.
        channels: 1 (greyscale) or 3 (colour).
        image_size: side of the square images the model sees.
        mean: per-channel mean used for normalisation, in [0, 1] pixel units.
        std: per-channel standard deviation used for normalisation, in [0, 1] pixel units.
        pools: pool name (``"all"``, ``"train"``, ``"val"``, ``"test"``) to its images.
        has_test_pool: False when the test split has to be carved out of a single pool.
        class_names: C human-readable names, when the dataset ships them.
    """

    name: str
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pools: dict[str, ImagePool]
    has_test_pool: bool
    class_names: tuple[str, ...] | None = None

    def class_label(self, class_index: int) -> str:
        """``"3"`` or ``"3 ('cat')"``: how error messages name a class."""
        if self.class_names is None:
            return str(class_index)
        return f"{class_index} ('{self.class_names[class_index]}')"
