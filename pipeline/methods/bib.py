"""``bib`` and ``mbib``: (mixture of) balanced information bottlenecks (Lan et al., TMLR 2025).

The multi-exit network of Fig. 2: v1, v2, v3 are the pooled outputs of the backbone's three
stages, ``z = FC(v3)`` is the bottleneck, and linear classifiers read them: h(v1), u(v2),
f(v3) (the backbone's own ``fc``) and g(z). Training minimises Eq. 11,
``a BIB(v1, z) + b BIB(v2, z) + BIB(v3, z)``; BIB (Sec. 3.2) is the case a = b = 0, where the
exit classifiers h and u are not built at all. Prediction is the mean of f(v3) and g(z).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from pipeline.methods.base import Embedding, Method, StepOutput
from pipeline.methods.bib_loss import class_temperatures, class_weights, mbib_loss
from pipeline.methods.kinds import BIBOptions, MBIBOptions
from pipeline.methods.losses import log_class_prior
from pipeline.models import Backbone

# Names of the intermediate exits, in the order of Eq. 11's weights (a, b).
EXIT_NAMES: tuple[str, str] = ("v1", "v2")


class BalancedInformationBottleneck(Method):
    """BIB / MBIB on the multi-exit network of Fig. 2, trained with Eq. 11.

    Attributes:
        bottleneck: the FC layer ``v3 -> z`` (``[D] -> [z_dim]``).
        bottleneck_head: g, the linear classifier ``z -> logits``.
        exit_heads: h (key ``"v1"``) and u (key ``"v2"``), linear classifiers of the
            intermediate exits; only the exits with a positive weight (a, b) have one.
        log_prior, weights, temperatures: ``[C]`` buffers log n_c, w_c (Eq. 7) and T_c,
            derived from the class counts (non-persistent, like ``class_counts``).
    """

    name: ClassVar[str] = "bib"
    Options: ClassVar[type] = BIBOptions

    def __init__(self, backbone: Backbone, class_counts: Tensor, options: BIBOptions) -> None:
        """Build the bottleneck, g and the exit classifiers around ``backbone``.

        Args:
            backbone: the network; its ``fc`` serves as f(v3).
            class_counts: ``[C]`` training images per class.
            options: an instance of ``type(self).Options``.

        Raises:
            PipelineError: a negative a, b, beta or z_dim, or a class without training images.
        """
        super().__init__(backbone, class_counts, options)
        self.register_buffer(
            "log_prior", log_class_prior(class_counts, self.name), persistent=False
        )
        self.register_buffer("weights", class_weights(class_counts, options.m), persistent=False)
        self.register_buffer(
            "temperatures", class_temperatures(class_counts, options.gamma), persistent=False
        )
        z_dim = options.z_dim or backbone.feature_dim
        self.bottleneck = nn.Linear(backbone.feature_dim, z_dim)
        self.bottleneck_head = nn.Linear(z_dim, backbone.num_classes)
        self.exit_heads = nn.ModuleDict(
            {
                exit_name: nn.Linear(width, backbone.num_classes)
                for exit_name, width, weight in zip(
                    EXIT_NAMES, backbone.stage_dims[:2], self.exit_weights(), strict=True
                )
                if weight > 0
            }
        )

    def exit_weights(self) -> tuple[float, float]:
        """The Eq. 11 weights (a, b) of the exits v1 and v2."""
        return (self.options.a, self.options.b)

    def training_step(self, images: Tensor, labels: Tensor, index: Tensor) -> StepOutput:
        """MBIB loss (Eq. 11) of one batch.

        Args:
            images: ``[B, C_in, H, W]`` images.
            labels: ``[B]`` class indices.
            index: ``[B]`` sample positions (unused).

        Returns:
            The scalar loss and the ``[B, C]`` ensemble logits (mean of f(v3) and g(z)).
        """
        return self.loss_from_stages(self.backbone.forward_stages(images), labels)

    def loss_from_stages(self, stages: list[Tensor], labels: Tensor) -> StepOutput:
        """Eq. 11 on given stage outputs (lets tests differentiate with respect to v1, v2, v3).

        Args:
            stages: ``[v1 [B, D1], v2 [B, D2], v3 [B, D]]`` pooled stage outputs.
            labels: ``[B]`` class indices.

        Returns:
            The scalar loss and the detached ``[B, C]`` ensemble logits.
        """
        observation = stages[-1]
        bottleneck_logits = self.bottleneck_head(self.bottleneck(observation))
        exit_logits, exit_weights = [], []
        exits = zip(EXIT_NAMES, stages[:2], self.exit_weights(), strict=True)
        for exit_name, stage, weight in exits:
            if exit_name in self.exit_heads:
                exit_logits.append(self.exit_heads[exit_name](stage))
                exit_weights.append(weight)
        final_logits = self.backbone.fc(observation)
        loss = mbib_loss(
            [*exit_logits, final_logits],
            [*exit_weights, 1.0],
            bottleneck_logits,
            labels,
            log_prior=self.log_prior,
            weights=self.weights,
            temperatures=self.temperatures,
            beta=self.options.beta,
        )
        ensemble = (final_logits + bottleneck_logits) / 2
        return StepOutput(loss=loss, logits=ensemble.detach())

    def predict(self, images: Tensor) -> Tensor:
        """Mean of the plain logits f(v3) and g(z) (Fig. 2, Sec. 4.2).

        Args:
            images: ``[B, C_in, H, W]`` images.

        Returns:
            ``[B, C]`` ensemble logits.
        """
        return self.embed(images).logits

    def embed(self, images: Tensor) -> Embedding:
        """v3, the ensemble prediction, and z, v1, v2 as extra views.

        Args:
            images: ``[B, C_in, H, W]`` images.

        Returns:
            ``features`` v3 ``[B, D]``, ``logits`` ``[B, C]`` (mean of f(v3) and g(z)) and
            ``extra`` ``{"z": [B, z_dim], "v1": [B, D1], "v2": [B, D2]}``.
        """
        first, second, observation = self.backbone.forward_stages(images)
        bottleneck = self.bottleneck(observation)
        ensemble = (self.backbone.fc(observation) + self.bottleneck_head(bottleneck)) / 2
        return Embedding(
            features=observation,
            logits=ensemble,
            extra={"z": bottleneck, "v1": first, "v2": second},
        )


class MixtureOfBalancedInformationBottlenecks(BalancedInformationBottleneck):
    """MBIB (Sec. 3.3): BIB with the exits v1 and v2 weighted a = 0.1 and b = 0.3 by default."""

    name: ClassVar[str] = "mbib"
    Options: ClassVar[type] = MBIBOptions

