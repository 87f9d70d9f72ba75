"""The libraries' configs built from params sections, and library config errors re-stated
with the params key.

Every stage builds its library configs here, and ``tailbank check`` builds all of them, so a
value a library refuses is refused before any work starts, named as the user wrote it
(``dlsa.flow.lr``), never as the library calls it (``FlowTrainConfig.lr``). Which section key
holds which library field is declared once, by the `stages.sections.Source` declarations of
`stages.params`: building a config and naming a key both read them.
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
from stages.params import (
    ANALYSIS,
    ANALYSIS_SHOTS,
    CASCADE,
    CASCADE_CLASSIFIER,
    FLOW,
    KMEANS,
    KNN,
    OPTIM,
    PROBE,
    SCHEDULE,
    SEPARABILITY,
    SHOTS,
    SOURCES,
    TRAIN,
)
from stages.sections import values

if TYPE_CHECKING:
    from pipeline.data import DatasetSource
    from stages.params import (
        ClassifyParams,
        DataParams,
        DLSAParams,
        EvalParams,
        Params,
        TrainParams,
    )

QUERY_SPLIT = "test"

# Library fields that no section holds: the stage passes them in, from these params keys.
_STAGE_KEYS: dict[tuple[str, str], str] = {
    ("FlowTrainConfig", "device"): "dlsa.device",
    ("ProbeConfig", "device"): "classify.device",
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
    if field == "seed":
        return "seeds"
    if owner in _TRAIN_OWNERS and method is not None:
        relative = f"{_TRAIN_OWNERS[owner]}{field}"
        if _has_key(overrides or {}, relative):
            return f"methods.{method}.train.{relative}"
    for source in SOURCES:
        if source.config.__name__ == owner and field in source.keys:
            return f"{source.section}.{source.keys[field]}"
    return _STAGE_KEYS.get((owner, field), f"{owner}.{field}")


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


def data_source(data: DataParams) -> DatasetSource:
    """The dataset source the ``data`` params name (prepare, pretrain and dump read the same
    images)."""
    from pipeline.data import load_source

    return load_source(data.dataset, data.root, download=data.download,
                       lists=data.lists.model_dump(), folders=data.folders.model_dump(),
                       image_size=data.image_size)


def train_config(recipe: TrainParams, seed: int) -> TrainConfig:
    """The engine's recipe from the ``train`` params (with a method's overrides merged)."""
    return TrainConfig(
        **values(TRAIN, recipe),
        optim=OptimConfig(**values(OPTIM, recipe.optim)),
        schedule=ScheduleConfig(**values(SCHEDULE, recipe.schedule)),
        seed=seed,
    )


def probe_config(section: ClassifyParams, seed: int, device: str) -> ProbeConfig:
    """The classifier library's recipe from the ``classify`` params.

    Args:
        section: the ``classify`` params.
        seed: the run's seed.
        device: the resolved device ("cpu", "cuda:0", ...), which is no params of the result.
    """
    return ProbeConfig(**values(PROBE, section), seed=seed, device=device)


def cascade_config(section: DLSAParams, num_classes: int, seed: int, device: str) -> CascadeConfig:
    """The feature library's cascade recipe from the ``dlsa`` params.

    Args:
        section: the ``dlsa`` params.
        num_classes: C of the bank; ``flow.num_clusters: null`` means half of them (the
            paper's 500 for the 1000 classes of ImageNet-LT), at least 2.
        seed: the run's seed.
        device: the resolved device.
    """
    flow = values(FLOW, section.flow)
    flow["num_clusters"] = flow["num_clusters"] or max(2, num_classes // 2)
    return CascadeConfig(
        **values(CASCADE, section),
        **values(CASCADE_CLASSIFIER, section.classifier),
        flow=FlowTrainConfig(**flow, seed=seed, device=device),
        seed=seed,
    )


def shot_groups(section: EvalParams) -> ShotGroups:
    """The shot-group thresholds of the ``eval`` params."""
    return ShotGroups(**values(SHOTS, section))


def analysis_config(params: Params, seed: int) -> AnalysisConfig:
    """The analysis library's settings from the ``analyze`` and ``eval`` params and a seed."""
    section = params.analyze
    return AnalysisConfig(
        knn=KnnConfig(**values(KNN, section), seed=seed),
        kmeans=KmeansConfig(**values(KMEANS, section), seed=seed),
        separability=SeparabilityConfig(**values(SEPARABILITY, section), seed=seed),
        **values(ANALYSIS, section),
        **values(ANALYSIS_SHOTS, params.eval),
        query_split=QUERY_SPLIT,
    )


def check_library_configs(params: Params, origin: str) -> None:
    """Build every library config the stages would build from ``params``.

    Raises:
        StageError: the first value a library refuses, named by its params key.
    """
    from pipeline.methods.kinds import build_options, method_sweep

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
