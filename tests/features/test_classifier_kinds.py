"""The registry of classifier kinds: one estimator per kind, cRT = cbs_linear's estimator."""

from __future__ import annotations

import dataclasses

from features.classifiers import CLASSIFIERS
from features.classifiers.estimators import TrainedHead
from features.configs import CLASSIFIER_KINDS


def test_the_registry_covers_every_kind_in_order() -> None:
    assert tuple(CLASSIFIERS) == tuple(CLASSIFIER_KINDS)


def test_crt_is_cbs_linear_for_its_own_epochs() -> None:
    crt, cbs = CLASSIFIERS["crt"], CLASSIFIERS["cbs_linear"]
    assert isinstance(crt, TrainedHead) and isinstance(cbs, TrainedHead)
    assert crt == dataclasses.replace(cbs, epochs="crt_epochs")
    assert cbs.epochs == "epochs" and cbs.balanced
