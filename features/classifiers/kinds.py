"""The one registry of classifier kinds: each kind's estimator, and the fit that dispatches.

    head              the backbone's own logits stored in the bank (no training).
    linear            instance-balanced linear classifier, plain cross-entropy.
    balanced_softmax  linear, balanced softmax loss (Ren et al. 2020, Eq. 4).
    cbs_linear        linear, plain cross-entropy, class-balanced sampling.
    cosine            scaled cosine classifier, balanced softmax loss.
    crt               Kang's classifier re-training: `cbs_linear` for `crt_epochs` epochs.
    lws               Kang's learnable weight scaling on the `linear` classifier.
    tau_norm          Kang's tau-normalised `linear` classifier.
    logit_adjusted    the stored logits minus tau log pi (Menon et al. 2021, Eq. 9), tau on val.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.progress import Progress
from features.bank.rows import FeatureRows
from features.classifiers.estimators import (
    Estimator,
    HeadLogits,
    LogitAdjustment,
    StoredLogits,
    TauNormalisation,
    TrainedHead,
    WeightScaling,
    balanced_softmax,
    cosine_init,
    cross_entropy,
    linear_init,
)
from features.classifiers.fitted import FittedClassifier
from features.classifiers.training import TrainingData
from features.configs import CLASSIFIER_KINDS, ProbeConfig
from features.errors import FeaturesError

_LINEAR = TrainedHead(linear_init, cross_entropy, balanced=False)
_CBS_LINEAR = TrainedHead(linear_init, cross_entropy, balanced=True)

CLASSIFIERS: dict[str, Estimator] = {
    "head": StoredLogits(),
    "linear": _LINEAR,
    "balanced_softmax": TrainedHead(linear_init, balanced_softmax, balanced=False),
    "cbs_linear": _CBS_LINEAR,
    "cosine": TrainedHead(cosine_init, balanced_softmax, balanced=False),
    # Classifier re-training (Kang et al. 2020, Sec. 4.2) is a re-initialised linear
    # classifier on class-balanced samples: the `cbs_linear` estimator, for its own epochs.
    "crt": dataclasses.replace(_CBS_LINEAR, epochs="crt_epochs"),
    "lws": WeightScaling(_LINEAR),
    "tau_norm": TauNormalisation(_LINEAR),
    "logit_adjusted": LogitAdjustment(),
}
"""Kind -> its estimator, in the order of `features.configs.CLASSIFIER_KINDS`."""


def fit_classifier(
    kind: str,
    *,
    train_x: np.ndarray | FeatureRows,
    train_y: np.ndarray,
    val_x: np.ndarray | FeatureRows,
    val_y: np.ndarray,
    class_counts: np.ndarray,
    config: ProbeConfig,
    head_logits: HeadLogits | None = None,
    base: FittedClassifier | None = None,
    progress: Progress | None = None,
) -> FittedClassifier:
    """Fits one kind of classifier on a bank's train rows, choosing on its val rows.

    Args:
        kind: One of `CLASSIFIER_KINDS`.
        train_x: float [N, D], training features: an array, or rows read from a bank on
            demand (`features.bank.rows`), which give the same classifier.
        train_y: int [N], training labels in [0, C).
        val_x: float [M, D], validation features (array or rows).
        val_y: int [M], validation labels.
        class_counts: int [C], training rows per class (the bank's `class_counts`).
        config: Hyper-parameters.
        head_logits: For kinds `head` and `logit_adjusted`: the bank's stored logits
            (train [N, C], val [M, C]).
        base: For `lws` and `tau_norm`: an already fitted `linear` classifier of the same
            rows and config to start from; fitted here when None.
        progress: Told ``(kind, epoch, epochs)`` after each training epoch (the `linear`
            base of `lws` / `tau_norm` fitted here reports as "linear").

    Returns:
        The classifier of the best val epoch (or tau).
    """
    if kind not in CLASSIFIER_KINDS:
        raise FeaturesError(f"unknown classifier kind {kind!r}; valid kinds: {CLASSIFIER_KINDS}")
    data = TrainingData.build(train_x, train_y, val_x, val_y, class_counts, config)
    return CLASSIFIERS[kind].fit(kind, data, config, head_logits, base, progress)
