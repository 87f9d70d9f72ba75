"""Classifiers trained on a bank's frozen features (decoupled learning, Kang et al. 2020).

Every trained kind is a small torch module on train-standardised features, trained by
minibatch SGD with momentum and a cosine learning-rate decay over its epochs; the state
of the epoch with the best accuracy on the (balanced) val split is kept. Test rows are
never seen here. All randomness comes from `torch.Generator`s seeded by `ProbeConfig.seed`,
so CPU fits are bit-for-bit repeatable.

Modules: `heads` (the torch modules), `fitted` (a fitted classifier and how it scores),
`payload` (saving and restoring one), `training` (the SGD loop), `estimators` (how each
family of kinds is fitted), `logit_adjustment` (the arithmetic of post-hoc logit adjustment)
and `kinds` (the registry of the kinds, `fit_classifier`).
"""

from features.classifiers.fitted import INPUT_FEATURES, INPUT_LOGITS, FittedClassifier
from features.classifiers.heads import CosineHead, LinearHead, Probe, ScaledLinearHead
from features.classifiers.kinds import CLASSIFIERS, fit_classifier
from features.classifiers.payload import classifier_from_payload, classifier_payload, linear_map_of
from features.classifiers.training import balanced_softmax_loss, check_finite_loss

__all__ = [
    "CLASSIFIERS",
    "INPUT_FEATURES",
    "INPUT_LOGITS",
    "CosineHead",
    "FittedClassifier",
    "LinearHead",
    "Probe",
    "ScaledLinearHead",
    "balanced_softmax_loss",
    "check_finite_loss",
    "classifier_from_payload",
    "classifier_payload",
    "fit_classifier",
    "linear_map_of",
]
