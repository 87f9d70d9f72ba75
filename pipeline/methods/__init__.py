"""Long-tail training methods, one module each, behind the :class:`Method` interface.

``ce`` (cross-entropy), ``cbs`` (class-balanced sampling), ``bsce`` (Balanced Softmax),
``paco`` (parametric contrastive learning), ``gml_teacher`` / ``gml_student`` (Gaussian
mixture likelihood distillation) and ``bib`` / ``mbib`` (balanced information bottleneck).
A new method is a module with a :class:`Method` subclass, added to :data:`METHODS`.
"""

from pipeline.methods.base import SAMPLINGS, Embedding, Method, NoOptions, StepOutput
from pipeline.methods.bsce import BalancedSoftmax
from pipeline.methods.cbs import ClassBalancedSampling
from pipeline.methods.ce import CrossEntropy
from pipeline.methods.losses import balanced_softmax_cross_entropy, log_class_prior
from pipeline.methods.options import OptionSweep
from pipeline.methods.registry import (
    METHODS,
    build_method,
    build_options,
    method_options_fields,
    method_sweep,
)

__all__ = [
    "METHODS",
    "SAMPLINGS",
    "BalancedSoftmax",
    "ClassBalancedSampling",
    "CrossEntropy",
    "Embedding",
    "Method",
    "NoOptions",
    "OptionSweep",
    "StepOutput",
    "balanced_softmax_cross_entropy",
    "build_method",
    "build_options",
    "log_class_prior",
    "method_options_fields",
    "method_sweep",
]
