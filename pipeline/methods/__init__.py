"""Long-tail training methods, one module each, behind the :class:`Method` interface.

``ce`` (cross-entropy), ``cbs`` (class-balanced sampling), ``bsce`` (Balanced Softmax),
``paco`` (parametric contrastive learning), ``gml_teacher`` / ``gml_student`` (Gaussian
mixture likelihood distillation), ``bib`` / ``mbib`` (balanced information bottleneck), and
the loss baselines ``la`` (logit adjustment), ``ldam_drw`` (LDAM with deferred re-weighting),
``focal`` (focal loss) and ``cb`` (class-balanced loss).
A new method is a module with a :class:`Method` subclass, added to :data:`METHODS`.
"""

from core.lazy import lazy_package

# Each name is imported from its module on first use: validating params imports the
# torch-free modules of this package (names, options, configs) without torch.
_EXPORTS: dict[str, str] = {
    "SAMPLINGS": "pipeline.methods.base",
    "Embedding": "pipeline.methods.base",
    "Method": "pipeline.methods.base",
    "NoOptions": "pipeline.methods.kinds",
    "StepOutput": "pipeline.methods.base",
    "BalancedSoftmax": "pipeline.methods.bsce",
    "ClassBalancedSampling": "pipeline.methods.cbs",
    "CrossEntropy": "pipeline.methods.ce",
    "balanced_softmax_cross_entropy": "pipeline.methods.losses",
    "log_class_prior": "pipeline.methods.losses",
    "logit_adjusted_cross_entropy": "pipeline.methods.losses",
    "OptionSweep": "pipeline.methods.options",
    "METHODS": "pipeline.methods.registry",
    "build_method": "pipeline.methods.registry",
    "build_options": "pipeline.methods.kinds",
    "method_options_fields": "pipeline.methods.kinds",
    "method_sweep": "pipeline.methods.kinds",
}
__all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS)
