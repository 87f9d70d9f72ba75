"""The libraries' configs built from params sections, and library config errors re-stated
with the params key.

Every stage builds its library configs here, and ``tailbank check`` builds all of them, so a
value a library refuses is refused before any work starts, named as the user wrote it
(``dlsa.flow.lr``), never as the library calls it (``FlowTrainConfig.lr``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from core.constraints import ConfigFieldError
from features.configs import (
    AnalysisConfig,
    CascadeConfig,
    FlowTrainConfig,
    KmeansConfig,
    KnnConfig,
    ProbeConfig,
    SeparabilityConfig,
    ShotGroups,
)
from pipeline.engine.config import OptimConfig, ScheduleConfig, TrainConfig
from stages.errors import StageError

if TYPE_CHECKING:
    from stages.params import ClassifyParams, DLSAParams, EvalParams, Params, TrainParams

QUERY_SPLIT = "test"

# Library fields whose params key is not <section>.<field>, per config class.
_SECTIONS: dict[str, tuple[str, dict[str, str]]] = {
    "TrainConfig": ("train", {"seed": "seeds"}),
    "OptimConfig": ("train.optim", {}),
    "ScheduleConfig": ("train.schedule", {}),
    "ProbeConfig": ("classify", {"seed": "seeds"}),
    "FlowTrainConfig": ("dlsa.flow", {"seed": "seeds", "device": "dlsa.device"}),
    "CascadeConfig": ("dlsa", {
        "seed": "seeds",
        "classifier_epochs": "dlsa.classifier.epochs",
        "classifier_batch_size": "dlsa.classifier.batch_size",
        "classifier_lr": "dlsa.classifier.lr",
        "classifier_momentum": "dlsa.classifier.momentum",
        "classifier_weight_decay": "dlsa.classifier.weight_decay",
        "min_val_rows": "dlsa.classifier.min_val_rows",
    }),
    "ShotGroups": ("eval", {}),
    "KnnConfig": ("analyze", {"seed": "seeds"}),
    "KmeansConfig": ("analyze", {
        "seed": "seeds",
        "n_clusters": "analyze.kmeans_clusters",
        "niter": "analyze.kmeans_niter",
        "max_train_rows": "analyze.kmeans_max_rows",
    }),
    "SeparabilityConfig": ("analyze", {
        "seed": "seeds", "max_rows_per_group": "analyze.probe_max_rows",
    }),
    "AnalysisConfig": ("analyze", {"many_above": "eval.many_above",
                                   "few_below": "eval.few_below"}),
}
_TRAIN_OWNERS = {"TrainConfig": "", "OptimConfig": "optim.", "ScheduleConfig": "schedule."}


def params_key(error: ConfigFieldError, method: str | None = None,
               overrides: Mapping[str, Any] | None = None) -> str:
    """The params key a library config error is about.

    Args:
        error: the library's error (config class and field).
        method: the method whose configs were being built, if any: its options are
            ``methods.<method>.options.*``, and a training key it overrides is
            ``methods.<method>.train.*``.
        overrides: that method's ``train:`` overrides.
    """
    owner, field = error.owner, error.field
    if owner.endswith("Options"):
        return f"methods.{method or '<method>'}.options.{field}"
    if owner in _TRAIN_OWNERS and method is not None and field != "seed":
        relative = f"{_TRAIN_OWNERS[owner]}{field}"
        if _has_key(overrides or {}, relative):
            return f"methods.{method}.train.{relative}"
    if owner not in _SECTIONS:
        return f"{owner}.{field}"
    section, renamed = _SECTIONS[owner]
    return renamed.get(field, f"{section}.{field}")


def restate(error: ConfigFieldError, origin: str, method: str | None = None,
            overrides: Mapping[str, Any] | None = None) -> StageError:
    """A library config error as one params-file line: ``origin: key: problem (got value)``."""
    return StageError(f"{origin}: {params_key(error, method, overrides)}: {error.problem} "
                      f"(got {error.value!r})")


@contextmanager
def in_params_terms(origin: str, method: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Re-state library config errors raised inside the block with their params key."""
    try:
        yield
    except ConfigFieldError as error:
        raise restate(error, origin, method, overrides) from None


def train_config(recipe: TrainParams, seed: int) -> TrainConfig:
    """The engine's recipe from the ``train`` params (with a method's overrides merged)."""
    schedule = recipe.schedule
    return TrainConfig(
        epochs=recipe.epochs,
        optim=OptimConfig(**recipe.optim.model_dump()),
        schedule=ScheduleConfig(
            kind=schedule.kind,
            warmup_epochs=schedule.warmup_epochs,
            milestones=tuple(schedule.milestones),
            gamma=schedule.gamma,
        ),
        seed=seed,
        max_grad_norm=recipe.max_grad_norm,
        sync_batchnorm=recipe.sync_batchnorm,
        precision=recipe.precision,
        deterministic=recipe.deterministic,
    )


def probe_config(section: ClassifyParams, seed: int, device: str) -> ProbeConfig:
    """The classifier library's recipe from the ``classify`` params.

    Args:
        section: the ``classify`` params.
        seed: the run's seed.
        device: the resolved device ("cpu", "cuda:0", ...), which is no params of the result.
    """
    return ProbeConfig(
        epochs=section.epochs,
        batch_size=section.batch_size,
        lr=section.lr,
        momentum=section.momentum,
        weight_decay=section.weight_decay,
        cosine_scale=section.cosine_scale,
        crt_epochs=section.crt_epochs,
        lws_epochs=section.lws_epochs,
        tau_grid=tuple(section.tau_grid),
        seed=seed,
        device=device,
    )


def cascade_config(section: DLSAParams, num_classes: int, seed: int, device: str) -> CascadeConfig:
    """The feature library's cascade recipe from the ``dlsa`` params.

    Args:
        section: the ``dlsa`` params.
        num_classes: C of the bank; ``flow.num_clusters: null`` means half of them (the
            paper's 500 for the 1000 classes of ImageNet-LT), at least 2.
        seed: the run's seed.
        device: the resolved device.
    """
    flow = section.flow
    flow_config = FlowTrainConfig(
        num_clusters=flow.num_clusters or max(2, num_classes // 2),
        **flow.model_dump(exclude={"num_clusters"}),
        seed=seed,
        device=device,
    )
    classifier = section.classifier
    return CascadeConfig(
        num_filters=section.num_filters,
        routed_share=section.routed_share,
        flow=flow_config,
        latent=section.latent,
        classifier_epochs=classifier.epochs,
        classifier_batch_size=classifier.batch_size,
        classifier_lr=classifier.lr,
        classifier_momentum=classifier.momentum,
        classifier_weight_decay=classifier.weight_decay,
        min_val_rows=classifier.min_val_rows,
        tail_max_count=section.tail_max_count,
        remainder=section.remainder,
        init=section.init,
        gate_share=section.gate_share,
        seed=seed,
    )


def shot_groups(section: EvalParams) -> ShotGroups:
    """The shot-group thresholds of the ``eval`` params."""
    return ShotGroups(many_above=section.many_above, few_below=section.few_below)


def analysis_config(params: Params, seed: int) -> AnalysisConfig:
    """The analysis library's settings from the ``analyze`` and ``eval`` params and a seed."""
    section = params.analyze
    return AnalysisConfig(
        knn=KnnConfig(
            k=section.k,
            chunk_rows=section.chunk_rows,
            ivf_above=section.ivf_above,
            nprobe=section.nprobe,
            use_gpu=section.use_gpu,
            seed=seed,
        ),
        kmeans=KmeansConfig(
            n_clusters=section.kmeans_clusters,
            niter=section.kmeans_niter,
            max_train_rows=section.kmeans_max_rows,
            seed=seed,
        ),
        separability=SeparabilityConfig(max_rows_per_group=section.probe_max_rows, seed=seed),
        many_above=params.eval.many_above,
        few_below=params.eval.few_below,
        tail_max_count=section.tail_max_count,
        query_split=QUERY_SPLIT,
    )


def check_library_configs(params: Params, origin: str) -> None:
    """Build every library config the stages would build from ``params``.

    Raises:
        StageError: the first value a library refuses, named by its params key.
    """
    from pipeline.methods import build_options, method_sweep

    seed = max(params.seeds)  # the seed fields' range is the same for every seed
    with in_params_terms(origin):
        shot_groups(params.eval)
        probe_config(params.classify, seed, "cpu")
        cascade_config(params.dlsa, 2, seed, "cpu")
        analysis_config(params, seed)
    for name, entry in params.methods.items():
        with in_params_terms(origin, name, entry.train):
            train_config(params.train_for(name), seed)
            # an option listing several values is a sweep, and finding it checks every value
            if method_sweep(entry.kind, entry.options) is None:
                build_options(entry.kind, entry.options)


def _has_key(tree: Mapping[str, Any], dotted: str) -> bool:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
