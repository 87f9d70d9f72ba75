"""``gml_student``: Gaussian Mixture Likelihood training from a frozen teacher (Suh & Seo, 2023).

The student (Sec. 3.3) is a backbone with the cosine classifier of the teacher, trained by

    gamma * L_cls (Eq. 6) + beta * L_GML (Eq. 4 / 10) + alpha_kd * L_KD.

Queries are the L2-normalised projector MLP of the student's pooled feature (Eq. 7). Keys are
*teacher* backbone features kept, raw, in class-wise FIFO queues whose lengths follow Eq. 5;
every step the whole queue passes through a trainable key MLP and is L2-normalised.

Views, as the official code makes them (``cifar_main.py`` and ``main.py`` give the dataset a
list of three transforms, each applied to the raw image, ``dataset/imbalance_cifar.py``;
``moco/builder.py`` ``MoCo._train(im_cls, im_q, im_k)`` routes them):

* the *classifier view* feeds L_cls and both sides of L_KD: the student's logits and the
  teacher's KD target are computed on the same draw;
* an independent *query view* goes through the student's backbone and projector (z_x);
* an independent *key view* goes through the teacher; its features are queued.

The training loader draws the query and key views from the raw image (they are
:meth:`GMLStudent.view_augmentations`). With ``view_augment: train`` they use ``train.augment``,
as on CIFAR (Table A.1: AutoAugment for classifier and GML views alike); ImageNet-LT uses
RandAugment for the classifier view and the SimCLR view for the other two
(``train.augment: randaugment``, ``view_augment: simclr``). The student's backbone sees the
classifier and query views as one batch, so batch norm normalises them together, as in the
official code. ``views: shared`` feeds one view to everything instead (tailbank's earlier
behaviour), for ablations.

Ablations of "the student surpasses its teacher" (Appendix A.3): the teacher's size is
``methods.gml_teacher.train.backbone`` (the student's backbone gives a same-size teacher), the
KD weight ``alpha_kd``, the schedule ``methods.<m>.train.epochs``, the queue ``queue_size`` (K);
``bench/gml_ablation.py`` runs them.

Choices where the paper is silent (the official code differs where noted):

* Enqueue order: the batch's teacher features (of the key view) are enqueued *before* the loss
  is computed, as the official code does, so a query meets the key of another view of its own
  image, MoCo's positive; Sec. 3.3's trainable tau_g excludes exactly these own-sample keys.
  ``enqueue_first=False`` enqueues after the loss (a query then meets its own image only
  through keys of earlier epochs).
* Empty slots are masked: a class with no key yet leaves the softmax of Eq. 4, and a query of
  such a class is left out of the mean (the official code fills the queue with random rows).
* The teacher is a registered sub-module, frozen in place (``requires_grad`` off, always in
  eval mode, even after ``train()``), and left out of :meth:`GMLStudent.parameter_groups`.
  Being a sub-module it follows ``.to(device)`` and lives in ``state_dict``: a student
  checkpoint is self-contained and a resume checks that the teacher is the same one.
* KD compares the plain ``s * cos`` logits of both networks (no prior), as the official code.
* With ``learn_tau``, tau_g is trained only by a second copy of L_GML whose keys exclude the
  query's own sample and whose similarities are detached (Sec. 3.3); the main term uses the
  detached tau_g. The second copy is added to the loss with weight beta, as in the official
  code, and tau_g is stored as log tau_g without weight decay. The official code always
  trains tau_g; the paper fixes it in most experiments (Sec. 3.3), so ``learn_tau`` is off
  by default.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.errors import ConfigError, PipelineError
from pipeline.methods.base import Embedding, Method, StepOutput
from pipeline.methods.cosine_classifier import CosineClassifier
from pipeline.methods.distributed import gather_from_all_ranks
from pipeline.methods.gml_loss import distillation_kl, gml_loss
from pipeline.methods.gml_queue import ClassWiseQueue, class_queue_sizes
from pipeline.methods.gml_teacher import (
    cosine_classifier_loss,
    log_label_prior,
    trainable_parameters_without,
)
from pipeline.methods.kinds import TRAIN_AUGMENT, GMLStudentOptions
from pipeline.models import Backbone

NAME = "gml_student"
@dataclass(frozen=True)
class TeacherTargets:
    """What the frozen teacher gives one student step.

    Attributes:
        logits: ``[B, C]`` plain ``s * cos`` logits of the classifier view (the KD target).
        key_features: ``[B, D_t]`` pooled features of the key view (queued raw).
    """

    logits: Tensor
    key_features: Tensor


@dataclass(frozen=True)
class GMLLossTerms:
    """The terms of one student step, unweighted.

    Attributes:
        classification: L_cls (Eq. 6).
        gml: L_GML (Eq. 4 / 10) with tau_g detached.
        gml_temperature: the own-sample-excluded copy that trains tau_g (0 unless
            ``learn_tau``).
        distillation: the KD term (0 when ``alpha_kd`` is 0).
        logits: ``[B, C]`` student cosine logits.
    """

    classification: Tensor
    gml: Tensor
    gml_temperature: Tensor
    distillation: Tensor
    logits: Tensor

    def total(self, options: GMLStudentOptions) -> Tensor:
        """``gamma L_cls + beta (L_GML + L_GML^tau) + alpha_kd L_KD``."""
        return (
            options.gamma * self.classification
            + options.beta * (self.gml + self.gml_temperature)
            + options.alpha_kd * self.distillation
        )


def projection_mlp(dims: Sequence[int], batchnorm: bool) -> nn.Sequential:
    """``Linear -> [BatchNorm] -> ReLU`` per hidden width, then a last ``Linear`` (Eq. 7's MLP).

    Args:
        dims: widths, input first, at least two.
        batchnorm: put a ``BatchNorm1d`` after each hidden linear layer.
    """
    layers: list[nn.Module] = []
    for width_in, width_out in zip(dims[:-2], dims[1:-1], strict=True):
        layers.append(nn.Linear(width_in, width_out))
        if batchnorm:
            layers.append(nn.BatchNorm1d(width_out))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


class GMLStudent(Method):
    """The GML student: cosine classifier + L_GML on teacher-filled class-wise queues + KD.

    Attributes:
        teacher: the frozen teacher (any trained :class:`Method`; its ``embed`` gives the
            queued features and the KD logits).
        classifier: the student's :class:`CosineClassifier`.
        projector: the query MLP on the student's pooled feature.
        key_encoder: the key MLP on queued teacher features.
        queue: the :class:`ClassWiseQueue` of raw teacher features.
        log_tau: log tau_g (a parameter if ``learn_tau``, else a buffer).
        log_prior: ``[C]`` buffer eta_c = log p(c).
    """

    name: ClassVar[str] = NAME
    Options: ClassVar[type] = GMLStudentOptions
    needs_teacher: ClassVar[bool] = True
    # L_GML waits until every class queue holds a key, so early steps leave the projector
    # and key MLP without gradient.
    skips_parameters: ClassVar[bool] = True

    def __init__(
        self, backbone: Backbone, class_counts: Tensor, options: Any, *, teacher: Method
    ) -> None:
        """Build the heads and empty queues around ``backbone`` and freeze ``teacher`` in place.

        Args:
            backbone: the student network.
            class_counts: ``[C]`` training images per class.
            options: a :class:`GMLStudentOptions`.
            teacher: the trained teacher, on the same C classes and counts.

        Raises:
            PipelineError: bad options, an empty class, or a teacher of other classes.
        """
        super().__init__(backbone, class_counts, options)
        check_options(options, backbone.feature_dim)
        check_teacher(teacher, class_counts)
        self.teacher = teacher.requires_grad_(False).eval()
        # The cosine classifier replaces the linear head (see GMLTeacher).
        backbone.fc.requires_grad_(False)
        self.classifier = CosineClassifier(
            backbone.feature_dim, backbone.num_classes, options.scale
        )
        dims = tuple(options.projector_dims)
        teacher_dim = teacher.backbone.feature_dim
        self.projector = projection_mlp(dims, options.mlp_batchnorm)
        self.key_encoder = projection_mlp((teacher_dim, *dims[1:]), options.mlp_batchnorm)
        sizes = class_queue_sizes(class_counts, options.queue_size, options.k_min)
        self.queue = ClassWiseQueue(sizes, teacher_dim)
        log_tau = torch.tensor(math.log(options.tau_g))
        if options.learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        self.register_buffer("log_prior", log_label_prior(class_counts, self.name))

    def train(self, mode: bool = True) -> GMLStudent:
        """Set the student's mode; the teacher stays in eval mode (its batch-norm statistics
        and dropout must not change)."""
        super().train(mode)
        self.teacher.eval()
        return self

    @property
    def tau_g(self) -> Tensor:
        """The scalar temperature tau_g of Eq. 3."""
        return self.log_tau.exp()

    def pooled_features(self, images: Tensor) -> Tensor:
        """``[B, D]`` pooled final features of the student backbone."""
        return self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)

    def query(self, features: Tensor) -> Tensor:
        """``[B, d]`` L2-normalised projections z_x of ``[B, D]`` student features (Eq. 7)."""
        return F.normalize(self.projector(features), dim=1)

    def view_augmentations(self) -> tuple[str | None, ...]:
        """The query and key views, in that order, drawn from the raw image by the loader
        (``None``: with ``train.augment``); none when ``views`` is "shared"."""
        if self.options.views == "shared":
            return ()
        augment = None if self.options.view_augment == TRAIN_AUGMENT else self.options.view_augment
        return (augment, augment)

    @torch.no_grad()
    def teacher_view(self, images: Tensor, key_images: Tensor | None = None) -> TeacherTargets:
        """The frozen teacher's KD logits of the classifier view and features of the key view.

        Args:
            images: ``[B, C_in, H, W]`` the classifier view.
            key_images: ``[B, C_in, H, W]`` the key view (``None``: ``images``).
        """
        if key_images is None or key_images is images:
            embedding = self.teacher.embed(images)
            return TeacherTargets(logits=embedding.logits, key_features=embedding.features)
        # One pass over both views; the teacher is in eval mode, so this changes nothing else.
        both = self.teacher.embed(torch.cat([images, key_images]))
        batch = images.shape[0]
        return TeacherTargets(logits=both.logits[:batch], key_features=both.features[batch:])

    def training_step(
        self,
        images: Tensor,
        labels: Tensor,
        index: Tensor,
        query_images: Tensor | None = None,
        key_images: Tensor | None = None,
    ) -> StepOutput:
        """One step: the key view's teacher features enqueued, then the loss terms from the
        queues (the other way round unless ``enqueue_first``).

        Args:
            images: ``[B, C_in, H, W]`` the classifier view (L_cls and L_KD).
            labels: ``[B]`` class indices.
            index: ``[B]`` dataset positions (identify a query's own keys).
            query_images: ``[B, C_in, H, W]`` the query view of the same images, an
                independent draw (``None``: ``images``, as with ``views: shared``).
            key_images: ``[B, C_in, H, W]`` the key view for the teacher, another independent
                draw (``None``: ``images``).

        Returns:
            The weighted total loss and the ``[B, C]`` student cosine logits.
        """
        teacher = self.teacher_view(images, key_images)
        if self.options.enqueue_first:
            self.enqueue(teacher.key_features, labels, index)
        terms = self.loss_terms(images, labels, index, teacher.logits, query_images)
        if not self.options.enqueue_first:
            self.enqueue(teacher.key_features, labels, index)
        return StepOutput(loss=terms.total(self.options), logits=terms.logits.detach())

    def enqueue(self, teacher_features: Tensor, labels: Tensor, index: Tensor) -> None:
        """Push ``[B, D_t]`` teacher features into their class rings (all ranks' batches)."""
        self.queue.enqueue(
            gather_from_all_ranks(teacher_features.detach()),
            gather_from_all_ranks(labels),
            gather_from_all_ranks(index),
        )

    def loss_terms(
        self,
        images: Tensor,
        labels: Tensor,
        index: Tensor,
        teacher_logits: Tensor,
        query_images: Tensor | None = None,
    ) -> GMLLossTerms:
        """The unweighted terms of one batch against the current queues.

        Args:
            images: ``[B, C_in, H, W]`` the classifier view.
            labels: ``[B]`` class indices.
            index: ``[B]`` dataset positions.
            teacher_logits: ``[B, C]`` the teacher's logits of ``images`` (the KD target).
            query_images: ``[B, C_in, H, W]`` the query view (``None``: ``images``).
        """
        features, query_features = self.view_features(images, query_images)
        logits = self.classifier(features)
        zero = logits.new_zeros(())
        gml, gml_temperature = (
            self.gml_terms(query_features, labels, index)
            if self.options.beta > 0
            else (zero, zero)
        )
        distillation = (
            distillation_kl(logits, teacher_logits, self.options.kd_temperature)
            if self.options.alpha_kd > 0
            else zero
        )
        return GMLLossTerms(
            classification=cosine_classifier_loss(logits, labels, self.log_prior),
            gml=gml,
            gml_temperature=gml_temperature,
            distillation=distillation,
            logits=logits,
        )

    def view_features(
        self, images: Tensor, query_images: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """``[B, D]`` pooled student features of the classifier view and of the query view.

        Both views go through the backbone as one ``[2B, ...]`` batch, as in the official code
        (``moco/builder.py``), so batch norm normalises them with shared statistics.
        """
        if query_images is None or query_images is images:
            features = self.pooled_features(images)
            return features, features
        both = self.pooled_features(torch.cat([images, query_images]))
        batch = images.shape[0]
        return both[:batch], both[batch:]

    def gml_terms(self, features: Tensor, labels: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        """L_GML (Eq. 4 / 10) with tau_g detached, and the tau_g-only copy (Sec. 3.3).

        Args:
            features: ``[B, D]`` student pooled features of the query view.
            labels: ``[B]`` class indices.
            index: ``[B]`` dataset positions.

        Returns:
            The two scalar terms; both 0 while the queues cannot serve (no key yet, or fewer
            than two rows for a batch-normalised MLP in training mode), and the second also
            0 unless ``learn_tau``.
        """
        zero = features.new_zeros(())
        slots = self.queue.filled_slots()
        if not self.can_contrast(features.shape[0], slots.numel()):
            return zero, zero
        # index_select copies, so enqueueing after this step cannot alter saved activations.
        keys = F.normalize(self.key_encoder(self.queue.features.index_select(0, slots)), dim=1)
        key_class = self.queue.slot_class[slots]
        cosine = self.query(features) @ keys.T
        every_key = torch.ones_like(cosine, dtype=torch.bool)
        tau = self.tau_g
        gml = gml_loss(
            cosine / tau.detach(),
            key_class,
            every_key,
            labels,
            self.log_prior,
            self.options.prior_weight,
        )
        if not self.options.learn_tau:
            return gml, zero
        not_own = self.queue.sample_index[slots][None, :] != index[:, None]
        gml_temperature = gml_loss(
            cosine.detach() / tau,
            key_class,
            not_own,
            labels,
            self.log_prior,
            self.options.prior_weight,
        )
        return gml, gml_temperature

    def can_contrast(self, batch_size: int, num_keys: int) -> bool:
        """Whether L_GML is defined: some key exists, and batch norm (if any) sees two rows."""
        if num_keys == 0:
            return False
        needs_two_rows = self.options.mlp_batchnorm and self.training
        return not needs_two_rows or min(batch_size, num_keys) >= 2

    def predict(self, images: Tensor) -> Tensor:
        """``[B, C]`` student logits ``s * cos(x, w_c)``, without the prior."""
        return self.classifier(self.pooled_features(images))

    def embed(self, images: Tensor) -> Embedding:
        """Pooled features ``[B, D]``, cosine logits ``[B, C]`` and the query ``projection``."""
        features = self.pooled_features(images)
        return Embedding(
            features=features,
            logits=self.classifier(features),
            extra={"projection": self.query(features)},
        )

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The student's trainable parameters; tau_g (if learnt) in its own group without
        weight decay. The teacher and the unused ``backbone.fc`` are left out."""
        excluded: list[nn.Module] = [self.teacher, self.backbone.fc]
        groups: list[dict[str, Any]] = []
        if isinstance(self.log_tau, nn.Parameter):
            groups.append({"params": [self.log_tau], "weight_decay": 0.0})
        main = [
            parameter
            for parameter in trainable_parameters_without(self, *excluded)
            if parameter is not self.log_tau
        ]
        return [{"params": main}, *groups]


def check_options(options: GMLStudentOptions, feature_dim: int) -> None:
    """Refuse projector widths that do not fit the student backbone (every other range is
    in ``GMLStudentOptions.CONSTRAINTS``).

    Raises:
        ConfigError: naming ``projector_dims``.
    """
    dims = tuple(options.projector_dims)
    if len(dims) < 2:
        raise ConfigError("GMLStudentOptions", "projector_dims", "must be two or more positive "
                          "widths", dims)
    if dims[0] != feature_dim:
        raise ConfigError("GMLStudentOptions", "projector_dims", f"starts with {dims[0]} but the "
                          f"student backbone's features are {feature_dim} wide; start it with "
                          f"{feature_dim}", dims)


def check_teacher(teacher: Any, class_counts: Tensor) -> None:
    """Refuse a teacher that is not a method trained on the student's classes and counts.

    Raises:
        PipelineError: with what differs and how to fix it.
    """
    if not isinstance(teacher, Method):
        raise PipelineError(
            f"method '{NAME}': teacher must be a trained pipeline Method (gml_teacher), got "
            f"{type(teacher).__name__}; pass the model of pretrain@gml_teacher"
        )
    if teacher.backbone.num_classes != class_counts.numel() or not torch.equal(
        teacher.class_counts.cpu(), class_counts.to(torch.int64).cpu()
    ):
        raise PipelineError(
            f"method '{NAME}': the teacher was trained on other class counts "
            f"({teacher.class_counts.numel()} classes, {int(teacher.class_counts.sum())} images) "
            f"than the student's ({class_counts.numel()} classes, {int(class_counts.sum())} "
            "images); retrain gml_teacher on the same dataset and split"
        )
