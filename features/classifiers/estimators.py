"""The four ways a bank classifier is obtained; `features.classifiers.kinds` names each kind's.

    StoredLogits      the backbone's own head: its stored logits decide, nothing is trained.
    TrainedHead       a freshly initialised head trained by SGD (linear, cosine, cRT, ...).
    WeightScaling     LWS: per-class scales learnt on a fitted `linear` classifier.
    TauNormalisation  tau-normalised weights of a fitted `linear` classifier.
    LogitAdjustment   the stored logits shifted by -tau log pi (Menon et al. 2021, Eq. 9).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.progress import Progress
from features.bank.rows import FeatureRows, as_rows
from features.classifiers.fitted import INPUT_LOGITS, FittedClassifier, stored_predictions
from features.classifiers.heads import CosineHead, LinearHead, Probe, ScaledLinearHead
from features.classifiers.logit_adjustment import choose_tau, log_label_prior
from features.classifiers.training import (
    LossFn,
    TrainingData,
    finish,
    new_linear_head,
    prior_corrected_loss,
    seeded_generator,
    top1_accuracy,
    train_probe,
    val_accuracy,
)
from features.configs import ProbeConfig
from features.errors import FeaturesError

HeadLogits = tuple[np.ndarray | FeatureRows, np.ndarray | FeatureRows]

# Val rows of stored logits read at once when logit adjustment gathers them to choose tau.
_VAL_BLOCK = 4096


class Estimator(Protocol):
    """Fits one kind on prepared training rows, choosing on their val rows."""

    def fit(
        self,
        kind: str,
        data: TrainingData,
        config: ProbeConfig,
        head_logits: HeadLogits | None,
        base: FittedClassifier | None,
        progress: Progress | None = None,
    ) -> FittedClassifier:
        """Args as `features.classifiers.kinds.fit_classifier`'s; ``kind`` names the result
        and ``progress`` is told ``(kind, epoch, epochs)`` after each training epoch."""
        ...


@dataclass(frozen=True)
class StoredLogits:
    """The backbone's own head: its stored logits are the decision, nothing is trained."""

    def fit(
        self,
        kind: str,
        data: TrainingData,
        config: ProbeConfig,
        head_logits: HeadLogits | None,
        base: FittedClassifier | None,
        progress: Progress | None = None,
    ) -> FittedClassifier:
        """Checks the stored train [N, C] and val [M, C] logits and measures val accuracy."""
        checked = checked_head_logits(kind, head_logits, data)
        accuracy = top1_accuracy(stored_predictions(checked[1]), data.val_y.cpu())
        return FittedClassifier(
            kind=kind,
            selected={"val_accuracy": accuracy},
            model=None,
            num_classes=data.num_classes,
            input_dim=data.num_classes,
            input_field=INPUT_LOGITS,
        )


def checked_head_logits(
    kind: str, head_logits: HeadLogits | None, data: TrainingData
) -> list[FeatureRows]:
    """The stored train [N, C] and val [M, C] logits as rows, checked against the data."""
    if head_logits is None:
        raise FeaturesError(
            f"classifier '{kind}' needs the bank's stored logits, but the bank has none; "
            f"re-dump the bank with logits or drop '{kind}' from the classifier kinds"
        )
    checked = []
    for name, logits, rows in (("head_logits[0] (train)", head_logits[0], len(data.train)),
                               ("head_logits[1] (val)", head_logits[1], len(data.val))):
        checked.append(as_rows(logits, name, data.num_classes))
        if len(checked[-1]) != rows:
            raise FeaturesError(f"{name}: expected {rows} rows of logits")
    return checked


@dataclass(frozen=True)
class LogitAdjustment:
    """Post-hoc logit adjustment (Menon et al. 2021, Eq. 9) of the backbone's stored logits.

    Scores ``f_y(x) - tau log pi_y`` with pi the training label frequencies; tau is the value
    of `ProbeConfig.tau_grid` with the best balanced val accuracy (ties to the smaller tau,
    `features.classifiers.logit_adjustment.choose_tau`). Only the val rows are looked at: the
    test split never takes part in the choice. Nothing is trained.
    """

    def fit(
        self,
        kind: str,
        data: TrainingData,
        config: ProbeConfig,
        head_logits: HeadLogits | None,
        base: FittedClassifier | None,
        progress: Progress | None = None,
    ) -> FittedClassifier:
        """Chooses tau on the stored val logits; ``base`` is not used."""
        _, val_rows = checked_head_logits(kind, head_logits, data)
        val_logits = torch.cat([block.cpu() for block in val_rows.blocks(_VAL_BLOCK)]).numpy()
        val_y = data.val_y.cpu().numpy()
        counts = data.class_counts.cpu().numpy()
        choice = choose_tau(val_logits, val_y, counts, tuple(config.tau_grid))
        shift = torch.from_numpy((-choice.tau * log_label_prior(counts)).astype(np.float32))
        fitted = FittedClassifier(
            kind=kind,
            selected={"tau": choice.tau},
            model=None,
            num_classes=data.num_classes,
            input_dim=data.num_classes,
            input_field=INPUT_LOGITS,
            shift=shift,
        )
        # val_accuracy is top-1, as for every other kind (the choice itself is balanced)
        predicted = torch.from_numpy(fitted.logits(val_logits).argmax(axis=1))
        fitted.selected["val_accuracy"] = top1_accuracy(predicted, data.val_y.cpu())
        return fitted


def linear_init(data: TrainingData, config: ProbeConfig) -> nn.Module:
    """z = W x + b, W ~ N(0, 0.01^2) from the config's seed, b = 0."""
    return new_linear_head(data, config)


def cosine_init(data: TrainingData, config: ProbeConfig) -> nn.Module:
    """z_c = s cos(x, w_c), unit rows w_c drawn from the config's seed."""
    weight = torch.randn(
        data.num_classes, data.dim, generator=seeded_generator(config), dtype=torch.float32
    )
    # unit rows: the gradient through w / ||w|| shrinks as 1 / ||w||, so randn rows (norm
    # ~sqrt(D)) would make the effective learning rate D times smaller than `lr`
    weight = F.normalize(weight, dim=1)
    return CosineHead(weight, config.cosine_scale)


def cross_entropy(data: TrainingData) -> LossFn:
    """Plain CE(z, y)."""
    return F.cross_entropy


def balanced_softmax(data: TrainingData) -> LossFn:
    """CE(z + log n, y) (Ren et al. 2020, Eq. 4); prediction uses the plain z."""
    return prior_corrected_loss(data)


@dataclass(frozen=True)
class TrainedHead:
    """A freshly initialised head on train-standardised features, trained by SGD with cosine
    lr decay; the best val epoch is kept.

    Attributes:
        init: builds the head (its weights drawn from the config's seed).
        loss: the training loss of the rows.
        balanced: draw each epoch's rows by class-balanced sampling instead of uniformly.
        epochs: the `ProbeConfig` field that gives the number of epochs.
    """

    init: Callable[[TrainingData, ProbeConfig], nn.Module]
    loss: Callable[[TrainingData], LossFn]
    balanced: bool
    epochs: str = "epochs"

    def fit(
        self,
        kind: str,
        data: TrainingData,
        config: ProbeConfig,
        head_logits: HeadLogits | None,
        base: FittedClassifier | None,
        progress: Progress | None = None,
    ) -> FittedClassifier:
        """Trains the head; ``head_logits`` and ``base`` are not used."""
        probe = data.probe(self.init(data, config))
        return train_probe(kind, probe, data, config, self.loss(data), balanced=self.balanced,
                           epochs=getattr(config, self.epochs), progress=progress)


@dataclass(frozen=True)
class OnLinearBase:
    """An estimator that re-heads a fitted `linear` classifier (LWS, tau-norm).

    Attributes:
        linear: fits the `linear` base when none is given.
    """

    linear: TrainedHead

    def fit(
        self,
        kind: str,
        data: TrainingData,
        config: ProbeConfig,
        head_logits: HeadLogits | None,
        base: FittedClassifier | None,
        progress: Progress | None = None,
    ) -> FittedClassifier:
        """Re-heads ``base`` (fitted here when None); ``head_logits`` is not used."""
        base = base_linear(base, data, config, self.linear, progress)
        return self.refit(kind, base, data, config, progress)

    def refit(self, kind: str, base: FittedClassifier, data: TrainingData,
              config: ProbeConfig, progress: Progress | None) -> FittedClassifier:
        """The new classifier on the checked `linear` ``base``."""
        raise NotImplementedError


@dataclass(frozen=True)
class WeightScaling(OnLinearBase):
    """Learnable weight scaling (Kang et al. 2020, Sec. 4.2) on the fitted `linear` classifier.

    Learns f [C] in z_c = f_c (w_c . x) + b_c with W, b frozen, minimising CE(z, y) on
    class-balanced samples for `lws_epochs` epochs. The scales get no weight decay: it
    would pull them to 0, not to their starting value 1.
    """

    def refit(self, kind: str, base: FittedClassifier, data: TrainingData,
              config: ProbeConfig, progress: Progress | None) -> FittedClassifier:
        """Trains the scales on ``base``'s frozen weights."""
        linear = _linear_head_of(base)
        head = ScaledLinearHead(linear.weight.detach(), linear.bias.detach())
        probe = _probe_on_base(base, head, data)
        no_decay = dataclasses.replace(config, weight_decay=0.0)
        return train_probe(kind, probe, data, no_decay, F.cross_entropy, balanced=True,
                           epochs=config.lws_epochs, progress=progress)


@dataclass(frozen=True)
class TauNormalisation(OnLinearBase):
    """Tau-normalisation (Kang et al. 2020, Sec. 4.2): w_c <- w_c / ||w_c||^tau, bias dropped.

    Tau is the value of `ProbeConfig.tau_grid` with the best val accuracy; ties go to the
    smaller tau.
    """

    def refit(self, kind: str, base: FittedClassifier, data: TrainingData,
              config: ProbeConfig, progress: Progress | None) -> FittedClassifier:
        """Normalises ``base``'s weights at each tau of the grid; keeps the best on val."""
        weight = _linear_head_of(base).weight.detach()
        norms = weight.norm(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny)
        best: tuple[float, float, Probe] | None = None
        for tau in sorted(set(config.tau_grid)):
            head = LinearHead(weight / norms**tau, torch.zeros(len(weight), dtype=weight.dtype))
            probe = _probe_on_base(base, head, data)
            accuracy = val_accuracy(probe, data)
            if best is None or accuracy > best[1]:
                best = (tau, accuracy, probe)
        assert best is not None
        tau, accuracy, probe = best
        return finish(kind, {"tau": tau, "val_accuracy": accuracy}, probe, data)


def base_linear(
    base: FittedClassifier | None,
    data: TrainingData,
    config: ProbeConfig,
    linear: TrainedHead,
    progress: Progress | None = None,
) -> FittedClassifier:
    """``base`` checked to be a `linear` classifier of these rows; fitted by ``linear`` when
    None (its epochs told to ``progress`` as "linear")."""
    if base is None:
        return linear.fit("linear", data, config, None, None, progress)
    if base.kind != "linear" or base.model is None:
        raise FeaturesError(
            f"base must be a fitted 'linear' classifier, got {base.kind!r}; "
            "fit kind 'linear' first or pass base=None"
        )
    if base.input_dim != data.dim or base.num_classes != data.num_classes:
        raise FeaturesError(
            f"base classifier maps {base.input_dim} features to {base.num_classes} classes, "
            f"but the rows have {data.dim} features and {data.num_classes} classes"
        )
    return base


def _probe_on_base(base: FittedClassifier, head: nn.Module, data: TrainingData) -> Probe:
    """A new head on the base classifier's own standardisation, which its weights assume."""
    assert base.model is not None
    return Probe(base.model.mean.clone(), base.model.std.clone(), head).to(data.device)


def _linear_head_of(base: FittedClassifier) -> LinearHead:
    assert base.model is not None and isinstance(base.model.head, LinearHead)
    return base.model.head
