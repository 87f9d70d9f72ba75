"""``paco``: Parametric Contrastive Learning with Balanced Softmax (Cui et al., ICCV 2021).

A MoCo-style pair of encoders: the query encoder is the backbone plus a projection MLP; the
key encoder is a momentum copy of both, updated after every optimiser step. A FIFO queue keeps
the L2-normalised projected keys of past batches with their labels. The parametric class
centres are the backbone's linear classifier on the pooled feature, whose logits get + log pi
(the training class prior) during training. The loss is :func:`paco_loss`; at test time the
prediction is the plain linear logits.

Each query is the batch's image as given (``train.augment``); its key view is an independent
draw of ``key_augment`` from the raw image, made by the training loader (the method's one
entry of :meth:`~pipeline.methods.base.Method.view_augmentations`), as the official code draws
``transform[0](img)`` and ``transform[1](img)`` from the same image: never a second
augmentation composed on the augmented query. The loader seeds it from (seed, epoch), so a
resumed run replays the same views.

Contrast set of query i (default, as PaCo's official code builds it): the C centres, the
batch's other queries, the batch's keys and the filled queue slots; only the self-contrast
q_i . q_i is removed, so the query's own key k_i (a second view of the same image) stays a
positive. ``contrast_queries=False`` drops the batch queries and ``own_key_positive=False``
drops k_i, for ablations.

Hyper-parameters (the defaults are the ImageNet-LT ResNet-50 values): alpha 0.05, T 0.2,
K 8192, projection dim 128, momentum 0.999. CIFAR-100-LT: alpha 0.01, T 0.05, K 1024,
projection dim 32 (400 epochs, lr 0.05).

With one process the key encoder's batch norm sees the whole key batch, as MoCo's shuffle-BN
would prevent across GPUs; the official code shuffles keys across GPUs, which one process
cannot do.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.errors import PipelineError
from pipeline.methods.base import Embedding, Method, StepOutput
from pipeline.methods.distributed import gather_from_all_ranks
from pipeline.methods.kinds import PaCoOptions
from pipeline.methods.losses import log_class_prior
from pipeline.methods.paco_loss import paco_loss
from pipeline.methods.paco_queue import LabelledKeyQueue
from pipeline.models import Backbone


def projection_head(feature_dim: int, projection_dim: int) -> nn.Sequential:
    """MoCo v2's projection MLP, ``Linear(D, D) -> BN -> ReLU -> Linear(D, projection_dim)``."""
    return nn.Sequential(
        nn.Linear(feature_dim, feature_dim),
        nn.BatchNorm1d(feature_dim),
        nn.ReLU(inplace=True),
        nn.Linear(feature_dim, projection_dim),
    )


class ParametricContrastive(Method):
    """PaCo around one backbone: query/key encoders, a key queue and the PaCo loss.

    Attributes:
        projector: the query projection MLP ``[D] -> [projection_dim]``.
        key_backbone, key_projector: momentum copies of ``backbone`` and ``projector``
            (no gradient; updated in :meth:`after_optimizer_step`).
        queue: the FIFO queue of projected keys and labels.
        log_prior: ``[C]`` log pi_c = log(n_c / sum n), non-persistent.
    """

    name: ClassVar[str] = "paco"
    Options: ClassVar[type] = PaCoOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: PaCoOptions) -> None:
        """Build the projector, the momentum key encoder and the empty queue.

        Args:
            backbone: the network; its ``fc`` holds the parametric class centres.
            class_counts: ``[C]`` training images per class.
            options: an instance of :class:`PaCoOptions`.

        Raises:
            PipelineError: an out-of-range option or a class without training images.
        """
        super().__init__(backbone, class_counts, options)
        # Centre scores share one softmax with the sample scores, so log pi must be a true
        # log-probability: a constant shift would change the loss, unlike in Balanced Softmax.
        log_prior = log_class_prior(class_counts, self.name)
        self.register_buffer(
            "log_prior", log_prior - math.log(float(class_counts.sum())), persistent=False
        )
        self.projector = projection_head(backbone.feature_dim, options.projection_dim)
        self.key_backbone = copy.deepcopy(backbone)
        self.key_projector = copy.deepcopy(self.projector)
        for parameter in self.key_parameters():
            parameter.requires_grad_(False)
        self.queue = LabelledKeyQueue(options.queue_size, options.projection_dim)

    def view_augmentations(self) -> tuple[str | None, ...]:
        """The key view: one draw of ``key_augment`` from each raw image, by the loader."""
        return (self.options.key_augment,)

    def training_step(
        self, images: Tensor, labels: Tensor, index: Tensor, *views: Tensor
    ) -> StepOutput:
        """PaCo loss of one batch; enqueues the batch's keys (of every rank) afterwards.

        The total loss is :func:`paco_loss` alone, ``L = mean_i L_i`` with
        ``L_i = -(T / T_base) sum_a w_i(a) log p_i(a) / sum_a w_i(a)`` over the centre scores
        ``fc(pooled) + log pi`` and the sample scores ``q_i . k_j / T``: its own-centre term
        (weight beta) is the supervised Balanced-Softmax-like term, and, as in the official
        code, no separate cross-entropy is added.

        Args:
            images: ``[B, C_in, H, W]`` images (the query view).
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).
            *views: ``key_images``, the key view ``[B, C_in, H, W]`` of the same images,
                drawn from the raw images apart from the query view.

        Returns:
            The scalar loss and the plain ``[B, C]`` logits (the test-time rule).

        Raises:
            PipelineError: no key view, or one of another shape than the queries.
        """
        key_images = self.key_view(images, views)
        pooled = self.pooled_features(images)
        logits = self.backbone.fc(pooled)
        queries = F.normalize(self.projector(pooled), dim=1)
        keys = self.key_projections(key_images)
        contrast_keys, contrast_labels, contrast_mask = self.contrast_set(queries, keys, labels)
        loss = paco_loss(
            logits + self.log_prior,
            labels,
            queries,
            contrast_keys,
            contrast_labels,
            contrast_mask,
            alpha=self.options.alpha,
            beta=self.options.beta,
            temperature=self.options.temperature,
            base_temperature=self.options.base_temperature or self.options.temperature,
        )
        self.queue.push(gather_from_all_ranks(keys), gather_from_all_ranks(labels))
        return StepOutput(loss=loss, logits=logits.detach())

    def embed(self, images: Tensor) -> Embedding:
        """Pooled features, plain logits and the query projection.

        Args:
            images: ``[B, C_in, H, W]`` images.

        Returns:
            ``features [B, D]``, ``logits [B, C]`` and ``extra["projection"]``, the
            L2-normalised query projection ``[B, projection_dim]``.
        """
        pooled = self.pooled_features(images)
        projection = F.normalize(self.projector(pooled), dim=1)
        return Embedding(
            features=pooled, logits=self.backbone.fc(pooled), extra={"projection": projection}
        )

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Momentum update of the key encoder, ``theta_k <- m theta_k + (1 - m) theta_q``."""
        step = 1.0 - self.options.momentum
        for key_parameter, query_parameter in zip(
            self.key_parameters(), self.query_parameters(), strict=True
        ):
            key_parameter.lerp_(query_parameter, step)

    def pooled_features(self, images: Tensor) -> Tensor:
        """``[B, D]`` pooled final features of the query backbone."""
        return self.backbone.forward_head(self.backbone.forward_features(images), pre_logits=True)

    def key_view(self, images: Tensor, views: tuple[Tensor, ...]) -> Tensor:
        """The key view of ``views``, checked against the query view ``images``."""
        if len(views) != 1 or views[0].shape != images.shape:
            shapes = [tuple(view.shape) for view in views]
            raise PipelineError(
                f"paco needs one key view of the query's shape {tuple(images.shape)}, got "
                f"{shapes}: ask the loader for views=method.view_augmentations()"
            )
        return views[0]

    @torch.no_grad()
    def key_projections(self, images: Tensor) -> Tensor:
        """``[B, projection_dim]`` L2-normalised keys from the momentum encoder."""
        key_backbone = self.key_backbone
        pooled = key_backbone.forward_head(key_backbone.forward_features(images), pre_logits=True)
        return F.normalize(self.key_projector(pooled), dim=1)

    def contrast_set(
        self, queries: Tensor, keys: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The sample side of every query's contrast set A(i), with its mask.

        Args:
            queries: ``[B, P]`` normalised query projections.
            keys: ``[B, P]`` normalised key projections of the same images.
            labels: ``[B]`` classes of the batch.

        Returns:
            ``[N, P]`` keys (batch queries if ``contrast_queries``, batch keys, queue),
            their ``[N]`` labels and the ``[B, N]`` bool mask of A(i): the query itself (when
            queries are contrasted), its own key unless ``own_key_positive``, and empty queue
            slots are False.
        """
        batch = labels.shape[0]
        not_self = ~torch.eye(batch, dtype=torch.bool, device=labels.device)
        own_key = torch.ones_like(not_self) if self.options.own_key_positive else not_self
        queue_valid = self.queue.valid()[None, :].expand(batch, -1)
        # torch.cat copies, so the push after the loss cannot alter what autograd saved.
        key_parts = [keys, self.queue.keys]
        label_parts = [labels, self.queue.labels]
        mask_parts = [own_key, queue_valid]
        if self.options.contrast_queries:
            key_parts.insert(0, queries)
            label_parts.insert(0, labels)
            mask_parts.insert(0, not_self)
        return torch.cat(key_parts), torch.cat(label_parts), torch.cat(mask_parts, dim=1)

    def query_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the query encoder (backbone, then projector)."""
        yield from self.backbone.parameters()
        yield from self.projector.parameters()

    def key_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the key encoder, in the order of :meth:`query_parameters`."""
        yield from self.key_backbone.parameters()
        yield from self.key_projector.parameters()

