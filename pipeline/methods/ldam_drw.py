"""``ldam_drw``: LDAM loss with deferred re-weighting (Cao et al., NeurIPS 2019).

The LDAM loss (Sec. 3.2, :mod:`pipeline.methods.ldam_loss`) trains from the first epoch; the
deferred re-weighting schedule (DRW, Sec. 3.3 and Algorithm 1) switches on class weights only
late in training (epoch 160 of 200 on CIFAR), after the features have been learnt without
them. The weights are Cui et al.'s inverse effective numbers with beta = 0.9999, as in the
official code. The method learns when DRW starts from the engine's
:meth:`~pipeline.methods.base.Method.before_epoch` hook, so a resumed run re-derives it from
the epoch and nothing about it is stored in checkpoints.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from torch import Tensor

from pipeline.methods.base import Embedding, Method, StepOutput
from pipeline.methods.cb_loss import effective_number_weights
from pipeline.methods.cosine_classifier import CosineClassifier
from pipeline.methods.kinds import LDAMDRWOptions
from pipeline.methods.ldam_loss import ldam_loss, ldam_margins
from pipeline.models import Backbone


def drw_first_epoch(epochs: int, drw_start: float) -> int:
    """The first 0-based epoch that re-weights: the least e with ``e >= drw_start * epochs``.

    ``drw_start`` 0.8 of 200 epochs gives 160, the paper's schedule; 1 gives ``epochs``, i.e.
    never. The product is rounded first so that 0.8 * 200 cannot land a hair above 160.
    """
    return math.ceil(round(drw_start * epochs, 9))


class LDAMDRW(Method):
    """LDAM on (by default) a cosine classifier, class-weighted from the DRW epoch on.

    Prediction is ``s * z``, the scaled logits without the margins (the official code takes
    the argmax of z, which is the same; the scale makes the bank's softmax the trained one).

    Attributes:
        classifier: a :class:`~pipeline.methods.cosine_classifier.CosineClassifier` with scale 1
            (logits are cosines), or None when ``options.cosine_head`` is false.
        margins: ``[C]`` buffer of the LDAM margins Delta_j.
        drw_weights: ``[C]`` buffer of the effective-number class weights of DRW.
        reweighting: whether the current epoch uses ``drw_weights``.
    """

    name: ClassVar[str] = "ldam_drw"
    Options: ClassVar[type] = LDAMDRWOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`.

        Raises:
            PipelineError: a class has no training image.
        """
        super().__init__(backbone, class_counts, options)
        self.classifier: CosineClassifier | None = None
        if options.cosine_head:
            # the cosine classifier replaces the linear head: frozen, it stays out of the
            # optimiser (Method.parameter_groups) and of DDP's gradient reduction
            backbone.fc.requires_grad_(False)
            self.classifier = CosineClassifier(backbone.feature_dim, backbone.num_classes, 1.0)
        # Both are functions of the class counts and options, rebuilt with the method.
        self.register_buffer(
            "margins", ldam_margins(class_counts, options.max_margin, self.name), persistent=False
        )
        self.register_buffer(
            "drw_weights",
            effective_number_weights(class_counts, options.beta, self.name),
            persistent=False,
        )
        # until the engine says which epoch it is: re-weighted only if DRW starts at once
        self.reweighting = options.drw_start == 0

    def before_epoch(self, epoch: int, epochs: int) -> None:
        """Switch the class weights on from epoch ``drw_start * epochs`` (0-based) on."""
        self.reweighting = epoch >= drw_first_epoch(epochs, self.options.drw_start)

    def pooled_features(self, images: Tensor) -> Tensor:
        """``[B, D]`` pooled final backbone features of ``[B, C_in, H, W]`` images."""
        return self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)

    def head(self, features: Tensor) -> Tensor:
        """``[B, C]`` logits z of ``[B, D]`` features, before margin and scale: cosines, or
        the linear head's logits."""
        return self.backbone.fc(features) if self.classifier is None else self.classifier(features)

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """LDAM loss of one batch, class-weighted once DRW has started.

        Args:
            images: ``[B, C_in, H, W]`` images.
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).

        Returns:
            The loss and the ``[B, C]`` scaled logits without margins (the test-time rule).
        """
        logits = self.head(self.pooled_features(images))
        weights = self.drw_weights if self.reweighting else None
        loss = ldam_loss(logits, labels, self.margins, self.options.scale, weights)
        return StepOutput(loss=loss, logits=(self.options.scale * logits).detach())

    def predict(self, images: Tensor) -> Tensor:
        """``[B, C]`` logits ``s * z``, without the margins."""
        return self.options.scale * self.head(self.pooled_features(images))

    def embed(self, images: Tensor) -> Embedding:
        """Pooled features ``[B, D]`` and the prediction ``s * z`` ``[B, C]``; no extra view."""
        features = self.pooled_features(images)
        return Embedding(features=features, logits=self.options.scale * self.head(features),
                         extra={})
