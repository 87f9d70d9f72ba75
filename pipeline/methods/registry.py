"""Methods by kind: ``build_method("bsce", backbone="resnet32", ...)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from core.names import valid_hint
from pipeline.errors import PipelineError
from pipeline.methods.base import Method
from pipeline.methods.bib import (
    BalancedInformationBottleneck,
    MixtureOfBalancedInformationBottlenecks,
)
from pipeline.methods.bsce import BalancedSoftmax
from pipeline.methods.cb import ClassBalanced
from pipeline.methods.cbs import ClassBalancedSampling
from pipeline.methods.ce import CrossEntropy
from pipeline.methods.focal import Focal
from pipeline.methods.gml_student import GMLStudent
from pipeline.methods.gml_teacher import GMLTeacher
from pipeline.methods.kinds import build_options, method_options_fields, method_sweep
from pipeline.methods.la import LogitAdjusted
from pipeline.methods.ldam_drw import LDAMDRW
from pipeline.methods.options import parse_options
from pipeline.methods.paco import ParametricContrastive
from pipeline.models import build_backbone, seeded_initialisation

METHODS: dict[str, type[Method]] = {
    method.name: method
    for method in (
        CrossEntropy,
        ClassBalancedSampling,
        BalancedSoftmax,
        ParametricContrastive,
        GMLTeacher,
        GMLStudent,
        BalancedInformationBottleneck,
        MixtureOfBalancedInformationBottlenecks,
        LogitAdjusted,
        LDAMDRW,
        Focal,
        ClassBalanced,
    )
}

# Validation reads the torch-free `pipeline.methods.kinds`; these are re-exported here.
__all__ = ["METHODS", "build_method", "build_options", "method_class", "method_options_fields",
           "method_sweep"]


def method_class(kind: str) -> type[Method]:
    """The class registered for ``kind``.

    Raises:
        PipelineError: unknown kind, with the valid kinds and the closest one.
    """
    if kind not in METHODS:
        raise PipelineError(f"unknown method kind '{kind}'{valid_hint(kind, tuple(METHODS))}")
    return METHODS[kind]


def build_method(
    kind: str,
    *,
    backbone: str,
    in_channels: int,
    class_counts: Sequence[int],
    options: Mapping[str, Any] | None = None,
    seed: int | None = None,
    teacher: Method | None = None,
) -> Method:
    """Build method ``kind`` around a fresh backbone with one class per entry of the counts.

    Args:
        kind: a key of :data:`METHODS`.
        backbone: a name in ``pipeline.models.BACKBONES``.
        in_channels: channels of the input images.
        class_counts: training images per class; its length is the number of classes C.
        options: the method's hyper-parameters by name; missing keys keep their defaults.
        seed: seed of every initial weight (backbone and method heads); ``None`` draws them
            from torch's default generator.
        teacher: the trained teacher of a method whose ``needs_teacher`` is set.

    Returns:
        The method on the CPU, in training mode.

    Raises:
        PipelineError: unknown kind, backbone or option key, a mistyped option value, or
            class counts the method cannot use.
    """
    method_type = method_class(kind)
    parsed_options = parse_options(method_type.Options, options, kind)
    counts = torch.as_tensor(list(class_counts), dtype=torch.int64)
    if counts.numel() == 0:
        raise PipelineError(f"method '{kind}': class_counts is empty; pass one count per class")
    if method_type.needs_teacher and teacher is None:
        raise PipelineError(f"method '{kind}' distils from a teacher: pass its trained teacher")
    extra = {"teacher": teacher} if method_type.needs_teacher else {}
    with seeded_initialisation(seed):
        network = build_backbone(backbone, num_classes=counts.numel(), in_channels=in_channels)
        method = method_type(network, counts, parsed_options, **extra)
    return method
