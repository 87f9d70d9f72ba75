"""``gml_teacher``: the cosine classifier with logit adjustment that GML distils from.

Suh & Seo, ICML 2023, Sec. 3.3: the teacher is a backbone with a cosine-similarity classifier
trained by ``L_cls`` (Eq. 6) alone, with no contrastive term. Its frozen features fill the
student's class-wise queues and its logits are the student's distillation target
(:mod:`pipeline.methods.gml_student`). ``L_cls`` lives here because the student trains the
very same head (:mod:`pipeline.methods.cosine_classifier`) and loss.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Embedding, LogitLoss
from pipeline.methods.cosine_classifier import CosineClassifier
from pipeline.methods.kinds import GMLTeacherOptions
from pipeline.methods.losses import log_class_prior
from pipeline.models import Backbone


def log_label_prior(class_counts: Tensor, method: str) -> Tensor:
    """The logit-adjustment term eta_c = log p(c) of Eq. 2, p(c) = n_c / sum_j n_j.

    Args:
        class_counts: ``[C]`` training images per class.
        method: the method's name, for the error message.

    Returns:
        ``[C]`` float32 log class frequencies.

    Raises:
        PipelineError: a class has no training image.
    """
    return log_class_prior(class_counts, method) - math.log(int(class_counts.sum()))


def cosine_classifier_loss(logits: Tensor, labels: Tensor, log_prior: Tensor) -> Tensor:
    """``L_cls`` of Eq. 6: cross-entropy of the cosine logits shifted by eta_c = log p(c).

    ``-log( exp(m_x.m_y / tau_s + eta_y) / sum_c exp(m_x.m_c / tau_s + eta_c) )``, averaged.

    Args:
        logits: ``[B, C]`` scaled cosine logits ``m_x . m_c / tau_s``.
        labels: ``[B]`` int64 class indices y.
        log_prior: ``[C]`` eta_c = log p(c).

    Returns:
        Scalar mean loss.
    """
    return F.cross_entropy(logits + log_prior, labels)


class GMLTeacher(LogitLoss):
    """Backbone + cosine classifier trained with the logit-adjusted ``L_cls`` (Eq. 6).

    Prediction is the plain ``s * cos`` (the prior is a training-time shift only), so the
    logits estimate the class-balanced posterior. The backbone's own linear ``fc`` is not
    used and is left out of the optimiser.

    Attributes:
        classifier: the :class:`CosineClassifier` on the pooled features.
        log_prior: ``[C]`` buffer eta_c = log p(c).
    """

    name: ClassVar[str] = "gml_teacher"
    Options: ClassVar[type] = GMLTeacherOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: Any) -> None:
        """See :class:`Method`.

        Raises:
            PipelineError: a class has no training image, or a non-positive scale.
        """
        super().__init__(backbone, class_counts, options)
        # The cosine classifier replaces the linear head: freezing it keeps it out of
        # DistributedDataParallel's gradient reduction, which would wait for it forever.
        backbone.fc.requires_grad_(False)
        self.classifier = CosineClassifier(
            backbone.feature_dim, backbone.num_classes, options.scale
        )
        self.register_buffer("log_prior", log_label_prior(class_counts, self.name))

    def pooled_features(self, images: Tensor) -> Tensor:
        """``[B, D]`` pooled final backbone features of ``[B, C_in, H, W]`` images."""
        return self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)

    def step_logits(self, images: Tensor) -> Tensor:
        """``[B, C]`` cosine logits of the pooled features."""
        return self.classifier(self.pooled_features(images))

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean ``L_cls`` (Eq. 6); the plain cosine logits are the test-time rule."""
        return cosine_classifier_loss(logits, labels, self.log_prior)

    def predict(self, images: Tensor) -> Tensor:
        """``[B, C]`` logits ``s * cos(x, w_c)``, without the prior."""
        return self.step_logits(images)

    def embed(self, images: Tensor) -> Embedding:
        """Pooled features ``[B, D]`` and the cosine logits ``[B, C]``; no extra view."""
        features = self.pooled_features(images)
        return Embedding(features=features, logits=self.classifier(features), extra={})

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Every trainable parameter except those of the unused linear head ``backbone.fc``."""
        return [{"params": trainable_parameters_without(self, self.backbone.fc)}]


def trainable_parameters_without(module: nn.Module, *excluded: nn.Module) -> list[nn.Parameter]:
    """Parameters of ``module`` that require gradients and belong to none of ``excluded``."""
    skipped = {id(parameter) for part in excluded for parameter in part.parameters()}
    return [
        parameter
        for parameter in module.parameters()
        if parameter.requires_grad and id(parameter) not in skipped
    ]
