"""Every method kind's name, options and teacher, importable without torch.

``tailbank check`` validates ``methods.<m>.kind``, ``.options`` and ``.teacher`` against
:data:`METHOD_KINDS`; each method module (`pipeline.methods.paco`, ...) trains with the
``Options`` named here, and a test checks that `pipeline.methods.METHODS` agrees with this table.
Each ``Options`` dataclass declares its ``CONSTRAINTS`` beside its fields and checks them when
built, raising `pipeline.errors.ConfigError`, which names the class and the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from core.constraints import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    UNIT_OPEN_HIGH,
    Constrained,
    Flag,
    Interval,
    ListOf,
    OneOf,
    Rule,
)
from core.names import valid_hint
from pipeline.data.names import AUGMENTATIONS
from pipeline.errors import ConfigError, PipelineError
from pipeline.methods.options import OptionSweep, find_sweep, option_defaults, parse_options


@dataclass(frozen=True)
class NoOptions:
    """The options of a method without hyper-parameters of its own."""




# Every augmentation the loaders draw can make the key view ("none": the raw image).
KEY_AUGMENTATIONS: tuple[str, ...] = AUGMENTATIONS


@dataclass(frozen=True)
class PaCoOptions(Constrained, error=ConfigError):
    """Hyper-parameters of PaCo.

    Attributes:
        alpha: weight of each same-class sample among the positives (CIFAR: 0.01).
        beta: weight of the query's own class centre (1 in the paper and the official code).
        temperature: T of the sample scores q.k / T (CIFAR: 0.05).
        base_temperature: T_base; the loss is scaled by T / T_base. 0 means T_base = T.
        queue_size: K, the number of past keys kept (CIFAR: 1024).
        projection_dim: width of the projected, L2-normalised queries and keys (CIFAR: 32).
        momentum: m of the key encoder update ``theta_k <- m theta_k + (1 - m) theta_q``.
        key_augment: augmentation of the key view, one of :data:`KEY_AUGMENTATIONS`, drawn
            from the raw image independently of the query's (the official CIFAR code: the
            SimCLR view, "simclr"; "none" makes the key the un-augmented image).
        contrast_queries: also contrast each query with the batch's other queries (with
            gradient), as the official code does.
        own_key_positive: keep the query's own key as a positive (weight alpha), as the
            official code does; False removes it from the contrast set.
    """

    alpha: float = 0.05
    beta: float = 1.0
    temperature: float = 0.2
    base_temperature: float = 0.0
    queue_size: int = 8192
    projection_dim: int = 128
    momentum: float = 0.999
    key_augment: str = "crop_flip"
    contrast_queries: bool = True
    own_key_positive: bool = True

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "alpha": NON_NEGATIVE,
        "beta": POSITIVE,  # the class centre is every query's positive
        "temperature": POSITIVE,
        "base_temperature": NON_NEGATIVE,
        "queue_size": POSITIVE_INT,
        "projection_dim": POSITIVE_INT,
        "momentum": Interval(0, 1),  # 1 freezes the key encoder
        "key_augment": OneOf(KEY_AUGMENTATIONS),
        "contrast_queries": Flag(),
        "own_key_positive": Flag(),
    }



@dataclass(frozen=True)
class BIBOptions(Constrained, error=ConfigError):
    """Hyper-parameters of BIB / MBIB (Sec. 3.2, 3.3 and 4.2).

    Attributes:
        a: weight of ``BIB(v1, z)`` in Eq. 11 (0: no v1 exit, as in BIB).
        b: weight of ``BIB(v2, z)`` in Eq. 11 (0: no v2 exit, as in BIB).
        beta: weight of the self-distillation term of every BIB (Eq. 9). The paper picks it
            from {0, ..., 5} per dataset (Sec. 4.2, App. I) without stating the pick; its code
            listing (Appendix J) hard-codes 5, the default here. At lr 0.05 on digits_lt an
            unclipped run with 5 diverges (bench/grad_clipping.py): clip the gradient norm
            (``max_grad_norm``) or lower the rate.
        gamma: exponent of the class temperatures ``T_c = (n_max / n_c)^gamma``; 0 on
            CIFAR-100-LT, 0.5 on ImageNet-LT and iNaturalist 2018 (Sec. 4.2).
        m: exponent of the class weights ``w_c ~ (1/n_c)^m`` of Eq. 7 (0.1 in the paper).
        z_dim: width of the bottleneck z; 0 means the width of v3 (the backbone's feature_dim).
    """

    a: float = 0.0
    b: float = 0.0
    beta: float = 5.0
    gamma: float = 0.0
    m: float = 0.1
    z_dim: int = 0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "a": NON_NEGATIVE,
        "b": NON_NEGATIVE,
        "beta": NON_NEGATIVE,
        "gamma": NON_NEGATIVE,
        "m": NON_NEGATIVE,
        "z_dim": NON_NEGATIVE_INT,
    }


@dataclass(frozen=True)
class MBIBOptions(BIBOptions):
    """BIB's options with the MBIB exit weights of Sec. 4.2 (a = 0.1, b = 0.3)."""

    a: float = 0.1
    b: float = 0.3



@dataclass(frozen=True)
class GMLTeacherOptions(Constrained, error=ConfigError):
    """Hyper-parameters of the GML teacher.

    Attributes:
        scale: s = 1 / tau_s, the inverse softmax temperature of the cosine classifier
            (tau_s = 1/30 in every experiment of the paper, Sec. 4.2).
    """

    scale: float = 30.0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {"scale": POSITIVE}




# independent: classifier, query and key views are separate draws of the raw image (official
# code); shared: one view feeds all three (ablation).
VIEW_MODES: tuple[str, ...] = ("independent", "shared")
# view_augment value meaning "the training loader's own augmentation" (train.augment).
TRAIN_AUGMENT = "train"


@dataclass(frozen=True)
class GMLStudentOptions(Constrained, error=ConfigError):
    """Hyper-parameters of the GML student (CIFAR-LT defaults of Table A.1).

    Attributes:
        scale: s = 1 / tau_s of the cosine classifier.
        queue_size: K, the total number of contrast slots (16384 on ImageNet-LT).
        k_min: k_m, the least queue length of a class (Eq. 5).
        tau_g: tau_g of Eq. 3, the initial value if ``learn_tau`` (0.07 on ImageNet-LT).
        learn_tau: train tau_g through the own-sample-excluded copy of L_GML (Sec. 3.3).
        projector_dims: widths of the query MLP, input first (must equal the student's
            feature width); the key MLP has the same widths after its input, which is the
            teacher's feature width. ImageNet-LT: (2048, 2048, 1024).
        gamma: weight of L_cls.
        beta: weight of L_GML.
        alpha_kd: weight of the distillation term (0 on ImageNet-LT and iNaturalist).
        kd_temperature: softmax temperature T of the distillation term.
        prior_weight: alpha of Eq. 10, the weight of log p(c) in L_GML (1 gives Eq. 4).
        enqueue_first: enqueue the batch's teacher features before computing the loss, as
            the official code does (False: after).
        mlp_batchnorm: batch norm after each hidden layer of both MLPs (official code).
        views: "independent" (classifier, query and key views are separate draws of the raw
            image, as the official code) or "shared" (one view for all three; ablation).
        view_augment: augmentation of the query and key views: "train" (the loader's own,
            ``train.augment``; CIFAR) or a name of ``AUGMENTATIONS`` ("simclr" on
            ImageNet-LT, Table A.1 Aug_GML).
    """

    scale: float = 30.0
    queue_size: int = 4096
    k_min: int = 2
    tau_g: float = 0.1
    learn_tau: bool = False
    projector_dims: tuple[int, ...] = (64, 64, 32)
    gamma: float = 1.0
    beta: float = 1.0
    alpha_kd: float = 1.0
    kd_temperature: float = 4.0
    prior_weight: float = 1.0
    enqueue_first: bool = True
    mlp_batchnorm: bool = True
    views: str = "independent"
    view_augment: str = TRAIN_AUGMENT

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "scale": POSITIVE,
        "queue_size": POSITIVE_INT,
        "k_min": POSITIVE_INT,
        "tau_g": POSITIVE,
        "learn_tau": Flag(),
        "projector_dims": ListOf(POSITIVE_INT, repeats=True),
        "gamma": NON_NEGATIVE,
        "beta": NON_NEGATIVE,
        "alpha_kd": NON_NEGATIVE,
        "kd_temperature": POSITIVE,
        "prior_weight": NON_NEGATIVE,
        "enqueue_first": Flag(),
        "mlp_batchnorm": Flag(),
        "views": OneOf(VIEW_MODES),
        "view_augment": OneOf((TRAIN_AUGMENT, *AUGMENTATIONS)),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.views == "shared" and self.view_augment != TRAIN_AUGMENT:
            raise ConfigError("GMLStudentOptions", "view_augment", "needs views: independent "
                              "(a shared view has no query or key view of its own); drop "
                              "view_augment or set views: independent", self.view_augment)


@dataclass(frozen=True)
class LogitAdjustedOptions(Constrained, error=ConfigError):
    """Hyper-parameters of the logit-adjusted loss (Menon et al., ICLR 2021, Eq. 10).

    Attributes:
        tau: tau of the additive adjustment ``tau * log pi_y`` (1 in the paper's experiments;
            0 is plain cross-entropy, and tau = 1 equals Balanced Softmax).
    """

    tau: float = 1.0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {"tau": NON_NEGATIVE}


@dataclass(frozen=True)
class LDAMDRWOptions(Constrained, error=ConfigError):
    """Hyper-parameters of LDAM with deferred re-weighting (Cao et al., NeurIPS 2019).

    Attributes:
        max_margin: the margin of the rarest class; C of ``Delta_j = C / n_j^(1/4)`` is chosen
            so that the largest margin is this (0.5 in the official code).
        scale: s, the logits are multiplied by it after the margin is subtracted (30 in the
            official code, on cosine logits).
        drw_start: the share of ``train.epochs`` after which re-weighting starts: epoch e
            (0-based) re-weights when ``e >= drw_start * epochs`` (the paper: 160 of 200 = 0.8;
            0 re-weights from the start, 1 never: plain LDAM).
        beta: beta of the effective-number class weights ``(1 - beta) / (1 - beta^n_j)``
            (Cui et al. 2019) used once re-weighting starts (0.9999 in the paper).
        cosine_head: classify with a cosine classifier (L2-normalised features and class
            weights) as the official code does for LDAM; false uses the backbone's linear head.
    """

    max_margin: float = 0.5
    scale: float = 30.0
    drw_start: float = 0.8
    beta: float = 0.9999
    cosine_head: bool = True

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "max_margin": NON_NEGATIVE,
        "scale": POSITIVE,
        "drw_start": Interval(0, 1),
        "beta": UNIT_OPEN_HIGH,  # beta = 1 would divide by 1 - 1^n = 0
        "cosine_head": Flag(),
    }


@dataclass(frozen=True)
class FocalOptions(Constrained, error=ConfigError):
    """Hyper-parameters of the focal loss (Lin et al., ICCV 2017, Eq. 4 and 5).

    Attributes:
        gamma: the focusing exponent of ``(1 - p_t)^gamma`` (2 in the paper; 0 is plain
            cross-entropy).
        alpha: optional per-class weights alpha_t of the alpha-balanced form (Eq. 5), one per
            class; empty (the default, as Cui et al. use it) means no alpha.
    """

    gamma: float = 2.0
    alpha: tuple[float, ...] = ()

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "gamma": NON_NEGATIVE,
        "alpha": ListOf(NON_NEGATIVE, allow_empty=True, repeats=True),
    }


# The base losses the class-balanced weights multiply (Cui et al. 2019, Sec. 4).
CB_BASE_LOSSES: tuple[str, ...] = ("softmax", "focal")


@dataclass(frozen=True)
class ClassBalancedOptions(Constrained, error=ConfigError):
    """Hyper-parameters of the class-balanced loss (Cui et al., CVPR 2019).

    Attributes:
        beta: beta of the effective number ``(1 - beta^n) / (1 - beta)``; the class weights
            are its inverse, normalised to sum to C (0 gives uniform weights; 0.9999 is the
            paper's pick for CIFAR-100-LT with softmax).
        loss: the base loss the weights multiply, one of :data:`CB_BASE_LOSSES`: "softmax"
            (cross-entropy) or "focal".
        gamma: the focusing exponent of the focal base loss (ignored by "softmax"; the paper
            tunes it in {0.5, 1, 2}).
    """

    beta: float = 0.9999
    loss: str = "softmax"
    gamma: float = 2.0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "beta": UNIT_OPEN_HIGH,  # beta = 1 would divide by 1 - 1^n = 0
        "loss": OneOf(CB_BASE_LOSSES),
        "gamma": NON_NEGATIVE,
    }


@dataclass(frozen=True)
class MethodKind:
    """What the params layer needs to know of a method kind, without building it.

    Attributes:
        name: the kind, a key of `pipeline.methods.METHODS`.
        options: the kind's frozen ``Options`` dataclass (`NoOptions` when it has none).
        module: the module that trains it, e.g. ``"pipeline.methods.paco"`` (the stage
            code DVC tracks for the kind).
        options: the kind's frozen ``Options`` dataclass (`NoOptions` when it has none).
        needs_teacher: it distils from a trained teacher (a ``teacher`` keyword).
    """

    name: str
    module: str
    options: type = NoOptions
    needs_teacher: bool = False


METHOD_KINDS: dict[str, MethodKind] = {
    kind.name: kind
    for kind in (
        MethodKind("ce", "pipeline.methods.ce"),
        MethodKind("cbs", "pipeline.methods.cbs"),
        MethodKind("bsce", "pipeline.methods.bsce"),
        MethodKind("paco", "pipeline.methods.paco", PaCoOptions),
        MethodKind("gml_teacher", "pipeline.methods.gml_teacher", GMLTeacherOptions),
        MethodKind("gml_student", "pipeline.methods.gml_student", GMLStudentOptions,
                   needs_teacher=True),
        MethodKind("bib", "pipeline.methods.bib", BIBOptions),
        MethodKind("mbib", "pipeline.methods.bib", MBIBOptions),
        MethodKind("la", "pipeline.methods.la", LogitAdjustedOptions),
        MethodKind("ldam_drw", "pipeline.methods.ldam_drw", LDAMDRWOptions),
        MethodKind("focal", "pipeline.methods.focal", FocalOptions),
        MethodKind("cb", "pipeline.methods.cb", ClassBalancedOptions),
    )
}


def method_kind(kind: str) -> MethodKind:
    """The entry of ``kind`` in :data:`METHOD_KINDS`.

    Raises:
        PipelineError: unknown kind, with the valid kinds and the closest one.
    """
    if kind not in METHOD_KINDS:
        raise PipelineError(f"unknown method kind '{kind}'{valid_hint(kind, METHOD_KINDS)}")
    return METHOD_KINDS[kind]


def method_options_fields(kind: str) -> dict[str, Any]:
    """Option names of method ``kind`` mapped to their defaults (for params validation)."""
    return option_defaults(method_kind(kind).options)


def build_options(kind: str, options: Mapping[str, Any] | None) -> Any:
    """Method ``kind``'s ``Options`` dataclass from plain values (checked, see
    :func:`~pipeline.methods.options.parse_options`)."""
    return parse_options(method_kind(kind).options, options, kind)


def method_sweep(kind: str, options: Mapping[str, Any] | None) -> OptionSweep | None:
    """The option of method ``kind`` given several values to choose from on val, if any
    (checked, see :func:`~pipeline.methods.options.find_sweep`)."""
    return find_sweep(method_kind(kind).options, options, kind)
