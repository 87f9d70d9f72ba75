"""Every config of the stage-2 library, with its declared constraints; imports no torch.

One dataclass per recipe: `ProbeConfig` (classifiers on a bank), `FlowTrainConfig` (one DLSA
flow filter), `CascadeConfig` (the DLSA cascade), `ShotGroups` (many / medium / few),
`KnnConfig`, `KmeansConfig`, `SeparabilityConfig` and `AnalysisConfig` (the feature-quality
analysis). Each checks its ``CONSTRAINTS`` table when built and raises
`features.errors.ConfigError`, which names the field, so the params layer can validate a whole
params file by building these configs without importing torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from core.constraints import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    UNIT_OPEN_HIGH,
    Constrained,
    DeviceName,
    Flag,
    Interval,
    ListOf,
    OneOf,
    Rule,
)
from features.errors import ConfigError

CLASSIFIER_KINDS = (
    "head",
    "linear",
    "balanced_softmax",
    "cbs_linear",
    "cosine",
    "crt",
    "lws",
    "tau_norm",
    "logit_adjusted",
)
SELECTIONS = ("purity", "likelihood")
LATENTS = ("flow", "feature")
MLE_FORMS = ("eq7", "mean")
MLE_SAMPLERS = ("instance", "class_uniform")
LR_SCALES = ("weight", "none")
AFFINE_FORMS = ("maf", "nflows")  # features.dlsa.flow.AFFINE_FORMS, here without torch
REMAINDERS = ("refit", "base")
INITS = ("head", "base", "none")


@dataclass(frozen=True)
class ProbeConfig(Constrained, error=ConfigError):
    """Hyper-parameters of the classifiers on a bank.

    Attributes:
        epochs: Epochs of `linear`, `balanced_softmax`, `cbs_linear` and `cosine`.
        batch_size: Rows per SGD step.
        lr: Initial learning rate, decayed to 0 by a cosine over each fit's epochs.
        momentum: SGD momentum.
        weight_decay: L2 penalty on weights and biases (not on LWS scales).
        cosine_scale: s, the temperature of the cosine classifier.
        crt_epochs: Epochs of cRT.
        lws_epochs: Epochs of LWS.
        tau_grid: Candidate tau of tau-normalisation and of logit adjustment, chosen on val.
        seed: Seed of initialisation and sampling.
        device: torch device to train on ("cpu", "cuda", "cuda:1", ...) or "auto" for CUDA
            when available.
    """

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    cosine_scale: float = 16.0
    crt_epochs: int = 10
    lws_epochs: int = 10
    tau_grid: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(21))
    seed: int = 0
    device: str = "cpu"

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "epochs": POSITIVE_INT,
        "batch_size": POSITIVE_INT,
        "lr": POSITIVE,
        "momentum": UNIT_OPEN_HIGH,
        "weight_decay": NON_NEGATIVE,
        "cosine_scale": POSITIVE,
        "crt_epochs": POSITIVE_INT,
        "lws_epochs": POSITIVE_INT,
        "tau_grid": ListOf(NON_NEGATIVE),
        "seed": SEED,
        "device": DeviceName(),
    }


@dataclass(frozen=True)
class FlowTrainConfig(Constrained, error=ConfigError):
    """Hyper-parameters of one flow filter (defaults: ImageNet-LT, DLSA supplement Sec. 5).

    Attributes:
        num_clusters: K, mixture components (500 for 1000 classes in the paper), at least 2.
        epochs: Training epochs.
        batch_size: Rows per SGD step.
        lr: Learning rate per unit of likelihood weight (``lr_scale: weight``): SGD runs at
            lr / m, m the expected sum of the MLE weights over a batch
            (`features.dlsa.losses.expected_batch_weight`). Eq. 7's sum grows with the batch
            and with the weight the class counts give each row: m is about 0.04 for
            ImageNet-LT at batch 1024 but 1.5 to 5.5 for a 10-class bank at 256, so the
            paper's SGD rate of 0.2 takes steps 40 to 130 times the paper's there, and the
            flow blows up. The default 0.01 is the paper's ImageNet-LT step (0.2 x 0.044).
        lr_scale: "weight" (lr / m, above) or "none" (SGD at lr as given: the paper's 0.2 on
            its own data; an ablation elsewhere).
        momentum: SGD momentum (the paper names plain SGD).
        weight_decay: L2 penalty (the paper names none).
        q: Exponent of the MLE class weights n_c^(-q) (Eq. 6).
        lambda_bal: Weight of the balancedness loss (Eq. 11).
        lambda_pure: Weight of the purity loss (Eq. 11).
        eta: Momentum of the balancedness estimate.
        weighted_mle: False trains with the plain MLE (q = 0), an ablation.
        use_balance: False drops L_bal, an ablation.
        use_purity: False drops L_pure, an ablation.
        mle: "eq7": L_MLE = -sum over the batch of omega(y) log L(x), omega(i) = n_i^-q /
            sum_j n_j^-q (Eq. 6-7 as printed); "mean": the batch mean of w(y) log L(x) with
            weights averaging 1 over the training rows (a mean negative log-likelihood).
        mle_sampler: "instance": each epoch visits every row once (the paper's batches);
            "class_uniform": each row of a batch draws a class uniformly, then a row of it
            (the official code).
        selection: "purity" or "likelihood", how the kept epoch is chosen on val.
        purity_threshold: A cluster is pure when its largest class holds more than this share.
        min_cluster_size: A pure cluster must hold more than this many val rows.
        sigma: Spread of the mixture centres; sqrt(3 / (2D)) when None.
        affine: The MADE blocks' map: "maf", u = (x - mu) exp(-alpha) (the MAF paper and the
            official DLSA code) or "nflows", u = softplus(alpha) x + mu (nflows' default).
        seed: Seed of initialisation, centres, batch order and purity pairs.
        device: "cpu", "cuda", "cuda:1", ... or "auto" for CUDA when available.
    """

    num_clusters: int = 500
    epochs: int = 50
    batch_size: int = 1024
    lr: float = 0.01
    lr_scale: str = "weight"
    momentum: float = 0.0
    weight_decay: float = 0.0
    q: float = 2.0
    lambda_bal: float = 1.0
    lambda_pure: float = 0.02
    eta: float = 0.7
    weighted_mle: bool = True
    use_balance: bool = True
    use_purity: bool = True
    mle: str = "eq7"
    mle_sampler: str = "instance"
    selection: str = "purity"
    purity_threshold: float = 0.7
    min_cluster_size: int = 10
    sigma: float | None = None
    affine: str = "maf"
    seed: int = 0
    device: str = "cpu"

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        # one cluster makes the posterior constant: no balancedness, purity or routing signal
        "num_clusters": Interval(2, integer=True),
        "epochs": POSITIVE_INT,
        "batch_size": POSITIVE_INT,
        "lr": POSITIVE,
        "lr_scale": OneOf(LR_SCALES),
        "momentum": UNIT_OPEN_HIGH,
        "weight_decay": NON_NEGATIVE,
        "q": NON_NEGATIVE,
        "lambda_bal": NON_NEGATIVE,
        "lambda_pure": NON_NEGATIVE,
        "eta": UNIT_OPEN_HIGH,
        "weighted_mle": Flag(),
        "use_balance": Flag(),
        "use_purity": Flag(),
        "mle": OneOf(MLE_FORMS),
        "mle_sampler": OneOf(MLE_SAMPLERS),
        "selection": OneOf(SELECTIONS),
        "purity_threshold": UNIT_OPEN_HIGH,
        "min_cluster_size": NON_NEGATIVE_INT,
        "sigma": Interval(0, low_open=True, optional=True),
        "affine": OneOf(AFFINE_FORMS),
        "seed": SEED,
        "device": DeviceName(),
    }


@dataclass(frozen=True)
class CascadeConfig(Constrained, error=ConfigError):
    """Hyper-parameters of a DLSA cascade.

    Attributes:
        num_filters: Flow filters in the cascade (3 in the paper).
        routed_share: Share of each filter's remaining training rows routed to its
            classifier, in (0, 1) (0.3 in the paper).
        flow: Training of each flow filter; its seed is replaced by seed + filter index.
        latent: z of the classifier: "flow" (the flow latent, as the paper) or "feature"
            (the standardised feature again, as the official code).
        classifier_epochs: Epochs of each cluster-aided classifier (150 officially).
        classifier_batch_size: Rows per step (128 officially).
        classifier_lr: Constant learning rate (1e-2 officially for CE/CBS features).
        classifier_momentum: SGD momentum (0 officially).
        classifier_weight_decay: L2 penalty.
        min_val_rows: Fewest routed val rows to choose a classifier epoch on; with fewer the
            last epoch is kept.
        tail_max_count: A class with at most this many training rows is "tail" in the
            separation accuracy (50, Fig. 7).
        remainder: What classifies the rows the last filter leaves: "refit", a classifier of
            the base kind fitted on those rows (the paper, the official code), or "base", the
            base classifier of the whole bank.
        init: What the x part of each cluster-aided classifier starts from: "head", the
            backbone's own classifier when it is linear in the features (the official
            code), else a linear base; "base", the first linear base classifier; "none".
        gate_share: Share of each class's val rows set aside to choose how many filters to
            use (the gate); the rest choose every epoch.
        gate_alpha: Family-wise level of the one-sided sign tests (Holm's step-down over
            the num_filters cascades) a cascade must pass on the gate rows against its base
            to be kept (`features.dlsa.fit`); 1 keeps the best gate accuracy whatever the
            evidence.
        seed: Seed of every filter and classifier.
    """

    num_filters: int = 3
    routed_share: float = 0.3
    flow: FlowTrainConfig = field(default_factory=FlowTrainConfig)
    latent: str = "flow"
    classifier_epochs: int = 150
    classifier_batch_size: int = 128
    classifier_lr: float = 1e-2
    classifier_momentum: float = 0.0
    classifier_weight_decay: float = 0.0
    min_val_rows: int = 10
    tail_max_count: int = 50
    remainder: str = "refit"
    init: str = "head"
    gate_share: float = 0.5
    gate_alpha: float = 0.05
    seed: int = 0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "num_filters": POSITIVE_INT,
        "routed_share": Interval(0, 1, low_open=True, high_open=True),
        "latent": OneOf(LATENTS),
        "classifier_epochs": POSITIVE_INT,
        "classifier_batch_size": POSITIVE_INT,
        "classifier_lr": POSITIVE,
        "classifier_momentum": UNIT_OPEN_HIGH,
        "classifier_weight_decay": NON_NEGATIVE,
        "min_val_rows": NON_NEGATIVE_INT,
        "tail_max_count": NON_NEGATIVE_INT,
        "remainder": OneOf(REMAINDERS),
        "init": OneOf(INITS),
        "gate_share": Interval(0, 1, low_open=True, high_open=True),
        "gate_alpha": Interval(0, 1, low_open=True),
        "seed": SEED,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.flow, FlowTrainConfig):
            raise ConfigError("CascadeConfig", "flow", "must be a FlowTrainConfig", self.flow)

    def filter_config(self, index: int) -> FlowTrainConfig:
        """The flow training config of filter `index` (seed + index)."""
        return dataclasses.replace(self.flow, seed=self.seed + index)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (the flow config as a dict), as stored in a cascade file."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CascadeConfig:
        """Inverse of `to_dict`; validates like the constructor."""
        values = dict(values)
        values["flow"] = FlowTrainConfig(**values["flow"])
        return cls(**values)


@dataclass(frozen=True)
class ShotGroups(Constrained, error=ConfigError):
    """Many-shot classes have more than `many_above` training images, few-shot fewer than
    `few_below`, medium the rest (Kang et al. 2020 use 100 and 20).

    Attributes:
        many_above: Training images above which a class is many-shot.
        few_below: Training images below which a class is few-shot; at most `many_above + 1`
            so that no class is both.
    """

    many_above: int = 100
    few_below: int = 20

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "many_above": POSITIVE_INT,
        "few_below": POSITIVE_INT,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.few_below > self.many_above + 1:
            raise ConfigError(
                "ShotGroups", "few_below",
                f"must be at most many_above + 1 = {self.many_above + 1} (a class cannot be "
                "both few- and many-shot)", self.few_below,
            )


@dataclass(frozen=True)
class KnnConfig(Constrained, error=ConfigError):
    """How the kNN index is built and searched.

    Attributes:
        k: Neighbours per query.
        chunk_rows: Rows per block read from a bank, added to the index or searched at once.
        ivf_above: Train rows above which the index is IVF instead of exact (flat).
        nprobe: Inverted lists an IVF index visits per query at first; doubled until the
            recall target is met (see `min_recall`).
        nlist: Inverted lists of an IVF index; None = round(sqrt(N)) (faiss' guideline for
            an IVF index of up to a million rows; more lists make its k-means slower).
        min_recall: Recall@k the IVF search must reach against the exact search, measured on
            `recall_queries` seeded queries; nprobe doubles until it does (at most nlist,
            which is exact). 0 keeps nprobe as given.
        recall_queries: Queries of that measurement.
        use_gpu: "auto" (GPU when `faiss.get_num_gpus() > 0`), True (require one) or False.
        seed: Seed of the IVF training sample and of faiss' k-means.
    """

    k: int = 10
    chunk_rows: int = 8192
    ivf_above: int = 200_000
    nprobe: int = 8
    nlist: int | None = None
    use_gpu: bool | str = "auto"
    seed: int = 0
    min_recall: float = 0.99
    recall_queries: int = 256

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "k": POSITIVE_INT,
        "chunk_rows": POSITIVE_INT,
        "ivf_above": POSITIVE_INT,
        "nprobe": POSITIVE_INT,
        "nlist": Interval(1, integer=True, optional=True),
        "min_recall": Interval(0, 1),
        "recall_queries": POSITIVE_INT,
        "use_gpu": OneOf(("auto", True, False)),
        "seed": SEED,
    }

    def check_k(self, num_train: int, exclude_self: bool) -> None:
        """Fails with one line when the train side has too few rows for k neighbours."""
        available = num_train - 1 if exclude_self else num_train
        if self.k > available:
            rows = f"{num_train} train rows" + (" minus the query itself" if exclude_self else "")
            raise ConfigError(
                "KnnConfig", "k",
                f"is larger than the {available} neighbours available ({rows}); set k <= "
                f"{max(available, 0)} or use a bigger bank", self.k,
            )


@dataclass(frozen=True)
class KmeansConfig(Constrained, error=ConfigError):
    """Spherical k-means on the L2-normalised rows of the index split (faiss).

    Centroids start from a seeded k-means++ draw (Arthur & Vassilvitskii 2007) rather than
    faiss' uniform draw of rows: a uniform draw rarely lands in a small tail class, so its rows
    would be merged into a head cluster by the initialisation alone.

    Attributes:
        n_clusters: Clusters; None = the number of classes.
        niter: Lloyd iterations.
        max_train_rows: Rows of the seeded sample the centroids are fitted on; every row is
            then assigned to its nearest centroid.
        seeding_rows_per_cluster: k-means++ draws from at most this many sample rows per
            cluster (its cost is rows x clusters x D).
        seed: Seed of the sample, of k-means++ and of faiss.
    """

    n_clusters: int | None = None
    niter: int = 20
    max_train_rows: int = 100_000
    seeding_rows_per_cluster: int = 16
    seed: int = 0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "n_clusters": Interval(1, integer=True, optional=True),
        "niter": POSITIVE_INT,
        "max_train_rows": POSITIVE_INT,
        "seeding_rows_per_cluster": POSITIVE_INT,
        "seed": SEED,
    }


@dataclass(frozen=True)
class SeparabilityConfig(Constrained, error=ConfigError):
    """The head/tail logistic probe: scikit-learn's class-balanced logistic regression.

    Attributes:
        max_iter: Most L-BFGS iterations (it stops earlier, at a gradient tolerance of
            `features.analysis.separability.TOL`).
        l2: L2 penalty on the weights (not the bias); keeps them finite on separable data.
        max_rows_per_group: Train rows per group (head, tail) the probe sees, a seeded
            sample of each; bounds memory on big banks.
        seed: Seed of that sample.
    """

    max_iter: int = 1000
    l2: float = 1e-4
    max_rows_per_group: int = 20_000
    seed: int = 0

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "max_iter": POSITIVE_INT,
        "l2": NON_NEGATIVE,
        "max_rows_per_group": POSITIVE_INT,
        "seed": SEED,
    }


@dataclass(frozen=True)
class AnalysisConfig(Constrained, error=ConfigError):
    """Settings of `features.analysis.analyze_bank`.

    Attributes:
        knn: kNN index and search settings (k, blocks, IVF, GPU).
        kmeans: k-means settings.
        separability: Head/tail probe settings.
        many_above: Shot groups, see `features.metrics.shot_groups`.
        few_below: Shot groups, see `features.metrics.shot_groups`.
        tail_max_count: A class with at most this many training images is tail (DLSA: 50).
        index_split: Split indexed by kNN, clustered by k-means, training the probe.
        query_split: Split searched by kNN, measured by Eq. 15-17, testing the probe.
        views: Views to analyse (`features`, `extra/<name>`); None = every view that both
            splits hold.
    """

    knn: KnnConfig = field(default_factory=KnnConfig)
    kmeans: KmeansConfig = field(default_factory=KmeansConfig)
    separability: SeparabilityConfig = field(default_factory=SeparabilityConfig)
    # the shot groups' own defaults, so that they are written once
    many_above: int = ShotGroups.many_above
    few_below: int = ShotGroups.few_below
    tail_max_count: int = 50
    index_split: str = "train"
    query_split: str = "test"
    views: tuple[str, ...] | None = None

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "tail_max_count": NON_NEGATIVE_INT,
        "index_split": OneOf(("train", "val", "test")),
        "query_split": OneOf(("train", "val", "test")),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        ShotGroups(self.many_above, self.few_below)
        if self.index_split == self.query_split:
            raise ConfigError(
                "AnalysisConfig", "query_split",
                f"is the index split {self.index_split!r} too; pick two splits (self-kNN of "
                "the index split is always reported)", self.query_split,
            )
