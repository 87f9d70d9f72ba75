"""The interface of a long-tail training method: a backbone, its loss and its prediction rule.

A method owns its backbone and anything else it trains or keeps (extra heads, queues,
momentum encoders); registering those as sub-modules or buffers puts them in ``state_dict``,
so the engine's checkpoints resume them. The engine only calls the methods below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.methods.kinds import NoOptions
from pipeline.models import Backbone

SAMPLINGS: tuple[str, ...] = ("instance", "class_balanced")


@dataclass(frozen=True)
class StepOutput:
    """What one training step hands the engine.

    Attributes:
        loss: scalar loss to minimise.
        logits: ``[B, C]`` predictions used for the running train accuracy (detached).
    """

    loss: Tensor
    logits: Tensor


@dataclass(frozen=True)
class Embedding:
    """What a method writes into a feature bank for one batch.

    Attributes:
        features: ``[B, D]`` pooled final backbone features.
        logits: ``[B, C]`` the method's own prediction.
        extra: other views by name, each ``[B, D']`` (empty for single-view methods).
    """

    features: Tensor
    logits: Tensor
    extra: dict[str, Tensor]


class Method(nn.Module, ABC):
    """A long-tail training method around one backbone.

    Class attributes:
        name: the key of the method in :data:`pipeline.methods.METHODS`.
        sampling: which training sampler the method expects, one of :data:`SAMPLINGS`.
        Options: frozen dataclass of the method's hyper-parameters; every field has a default.
        needs_teacher: the constructor takes a keyword ``teacher`` (a trained, frozen
            :class:`Method`, e.g. the GML teacher of a GML student).
        skips_parameters: some steps leave a trainable parameter without gradient
            (DistributedDataParallel then has to look for unused parameters every step).

    Attributes:
        backbone: the network whose features go into the bank.
        class_counts: ``[C]`` int64 training images per class (a non-persistent buffer: it is
            rebuilt from the constructor argument, never read back from a checkpoint).
        options: an instance of ``Options``.
        pixel_normalisation: ``(mean, std)`` per channel in [0, 1] pixel units of the images
            the method is given, or ``None``; methods that augment a second view with a pixel
            policy (PaCo's SimCLR keys) need it.
    """

    name: ClassVar[str]
    sampling: ClassVar[str] = "instance"
    Options: ClassVar[type] = NoOptions
    needs_teacher: ClassVar[bool] = False
    skips_parameters: ClassVar[bool] = False

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """Attach the backbone and the training class frequencies.

        Args:
            backbone: the network to train.
            class_counts: ``[C]`` training images per class, C = ``backbone.num_classes``.
            options: an instance of ``type(self).Options``.

        Raises:
            PipelineError: ``class_counts`` does not have one non-negative entry per class.
        """
        super().__init__()
        check_class_counts(class_counts, backbone.num_classes, self.name)
        self.backbone = backbone
        self.options = options
        self.pixel_normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None
        self.register_buffer("class_counts", class_counts.to(torch.int64), persistent=False)

    @abstractmethod
    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """Loss of one training batch (the engine calls backward and the optimiser).

        Args:
            images: ``[B, C_in, H, W]`` float32 images.
            labels: ``[B]`` int64 class indices.
            index: ``[B]`` int64 positions of the samples in the training split.

        Returns:
            The scalar loss and the ``[B, C]`` logits for the train accuracy.
        """

    def forward(self, images: Tensor, labels: Tensor, index: Tensor, *views: Tensor) -> StepOutput:
        """The training step; being ``forward`` lets DistributedDataParallel wrap a method.

        ``views`` are the extra views of :meth:`view_augmentations`, passed on positionally
        after ``index`` (none for a method that asks for none).
        """
        return self.training_step(images, labels, index, *views)

    def view_augmentations(self) -> tuple[str | None, ...]:
        """Augmentations of the extra training views of each image this method needs.

        The training loader draws each view independently from the raw image (``None``: with
        the loader's own augmentation) and the engine passes them to :meth:`training_step`
        after ``index``, in this order. Single-view methods need none.
        """
        return ()

    def predict(self, images: Tensor) -> Tensor:
        """Evaluation logits: the plain linear head unless a method says otherwise.

        Args:
            images: ``[B, C_in, H, W]`` images.

        Returns:
            ``[B, C]`` logits whose argmax is the prediction.
        """
        return self.backbone(images)

    def embed(self, images: Tensor) -> Embedding:
        """Pooled features, the method's prediction and any extra views, for a feature bank.

        Args:
            images: ``[B, C_in, H, W]`` images.

        Returns:
            ``features [B, D]``, ``logits [B, C]`` and ``extra`` (empty by default).
        """
        features = self.backbone.forward_head(
            self.backbone.forward_features(images), pre_logits=True
        )
        return Embedding(features=features, logits=self.backbone.fc(features), extra={})

    def before_epoch(self, epoch: int, epochs: int) -> None:
        """Hook run before every training epoch; none here.

        For a loss that changes with training progress (LDAM-DRW switches its class weights
        on at a given epoch). The engine calls it with the 0-based epoch about to train, also
        for the first epoch of a resumed run, so such a method derives what it needs from the
        epoch and keeps no extra state in the checkpoint.

        Args:
            epoch: the 0-based epoch about to train.
            epochs: the length of the run in epochs.
        """

    def after_optimizer_step(self) -> None:
        """Hook run after every optimiser step (e.g. momentum-encoder updates); none here."""

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups: every trainable parameter in one group by default.

        A group may carry ``lr_scale`` (multiplies the scheduled learning rate) and any
        option both optimisers take (SGD, AdamW) such as ``weight_decay``.
        """
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]


class LogitLoss(Method):
    """A method whose training step is one loss on one view's logits (ce, bsce, la, focal,
    cb, the GML teacher): subclasses say which logits (:meth:`step_logits`, by default the
    backbone's linear head) and which loss (:meth:`loss`); the engine gets the loss and the
    detached logits.
    """

    def step_logits(self, images: Tensor) -> Tensor:
        """``[B, C]`` logits the loss is taken on; also the train-accuracy prediction.

        Args:
            images: ``[B, C_in, H, W]`` images.
        """
        return self.backbone(images)

    @abstractmethod
    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The scalar loss of a batch.

        Args:
            logits: ``[B, C]`` from :meth:`step_logits`.
            labels: ``[B]`` int64 class indices.
        """

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """See :class:`Method`; ``index`` is unused."""
        logits = self.step_logits(images)
        return StepOutput(loss=self.loss(logits, labels), logits=logits.detach())


def check_class_counts(class_counts: Tensor, num_classes: int, method: str) -> None:
    """Refuse class counts that are not one non-negative integer per class."""
    if class_counts.dim() != 1 or class_counts.numel() != num_classes:
        raise PipelineError(
            f"method '{method}': class_counts has shape {tuple(class_counts.shape)} but the "
            f"backbone has {num_classes} classes; pass one training count per class"
        )
    if class_counts.is_floating_point() or bool((class_counts < 0).any()):
        raise PipelineError(
            f"method '{method}': class_counts must be non-negative integers, got "
            f"{class_counts.tolist()}; pass the number of training images of each class"
        )
