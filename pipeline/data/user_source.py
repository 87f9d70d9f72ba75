"""What the user's own datasets (``image_folder``, ``image_list``) share.

Their images are read from disk batch by batch (never all into memory), converted to RGB
whether they are colour or greyscale, and resized to ``data.image_size``; they are normalised
with the ImageNet statistics, as natural photographs usually are.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.dataset_source import DatasetSource, ImagePool
from pipeline.data.list_sources import IMAGENET_MEAN, IMAGENET_STD, LIST_IMAGE_SIZE

# The side the model sees when ``data.image_size`` is not set: the usual ImageNet crop.
USER_IMAGE_SIZE = LIST_IMAGE_SIZE


def resolve_path(root: Path, path: str | None) -> Path:
    """``path`` when absolute, else relative to ``root``; ``None`` is ``root`` itself."""
    if path is None:
        return root
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def user_source(
    name: str,
    pools: dict[str, ImagePool],
    class_names: tuple[str, ...],
    image_size: int | None,
) -> DatasetSource:
    """Describe the pools of a user dataset as a :class:`DatasetSource`.

    Args:
        name: ``"image_folder"`` or ``"image_list"``.
        pools: ``"train"``, and ``"val"`` / ``"test"`` when the user gave them.
        class_names: C names, in label order.
        image_size: side of the square images the model sees; ``None`` for 224.

    Returns:
        The source; it has a test pool only when the user gave test images.
    """
    return DatasetSource(
        name=name,
        num_classes=len(class_names),
        channels=3,
        image_size=image_size or USER_IMAGE_SIZE,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pools=pools,
        has_test_pool="test" in pools,
        class_names=class_names,
    )
