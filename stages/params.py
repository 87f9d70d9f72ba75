"""The typed schema of params.yaml: every key validated on load, with one-line errors.

Which keys each stage reads is declared once, in `stages.dag.STAGES` (dvc.yaml's params come
from there, and tests/stages/test_dag_code.py checks them against the keys each stage reads).

A section that configures a library is generated from the library's config dataclass (see
`stages.sections`): ``dlsa.flow`` holds `features.configs.FlowTrainConfig`'s fields with its
types, defaults and constraints, so a default is written once, in the library. The stage layer
writes only its own keys (devices, seeds, data, what to run, method entries).
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
)

from core.constraints import SEED
from core.names import closest, did_you_mean, name_problem
from features.configs import (
    CLASSIFIER_KINDS,
    AnalysisConfig,
    CascadeConfig,
    FlowTrainConfig,
    KmeansConfig,
    KnnConfig,
    ProbeConfig,
    SeparabilityConfig,
    ShotGroups,
)
from pipeline.data.names import (
    AUGMENTATIONS,
)
from pipeline.engine.config import OptimConfig, ScheduleConfig, TrainConfig
from pipeline.methods.kinds import METHOD_KINDS, method_options_fields
from pipeline.models.names import BACKBONES
from stages.data_section import DataParams
from stages.errors import StageError
from stages.imports_section import ImportParams
from stages.machine import machine_fields
from stages.sections import (
    Device,
    Float,
    Int,
    Source,
    Str,
    StrictSection,
    known,
    one_of,
    section_model,
)

SchemaModel = type[BaseModel]
# numpy, torch and faiss all take seeds below 2**30, with room for per-stream offsets
MAX_SEED = SEED.high

# The library fields each section holds. A section's default, type and range of such a field
# are the library config's (see `stages.sections`); the stage adds only its own keys.
# kind, betas and eps came with AdamW, after models and banks first carried the digests of
# train.optim: they enter a dump (and a digest) only when set to other than their defaults.
OPTIM = Source.of(OptimConfig, "train.optim", new=("kind", "betas", "eps"))
SCHEDULE = Source.of(ScheduleConfig, "train.schedule")
TRAIN = Source.of(TrainConfig, "train", exclude=("optim", "schedule", "seed"))
PROBE = Source.of(ProbeConfig, "classify", exclude=("seed", "device"))
FLOW = Source.of(FlowTrainConfig, "dlsa.flow", exclude=("seed", "device"),
                 nullable=("num_clusters",))
CASCADE = Source.of(CascadeConfig, "dlsa", fields=(
    "num_filters", "routed_share", "latent", "remainder", "init", "gate_share", "gate_alpha",
    "tail_max_count",
))
CASCADE_CLASSIFIER = Source.of(CascadeConfig, "dlsa.classifier", rename={
    "classifier_epochs": "epochs",
    "classifier_batch_size": "batch_size",
    "classifier_lr": "lr",
    "classifier_momentum": "momentum",
    "classifier_weight_decay": "weight_decay",
    "min_val_rows": "min_val_rows",
})
SHOTS = Source.of(ShotGroups, "eval")
KNN = Source.of(KnnConfig, "analyze", fields=("k", "chunk_rows", "ivf_above", "nprobe",
                                              "min_recall", "recall_queries", "use_gpu"))
KMEANS = Source.of(KmeansConfig, "analyze", rename={
    "n_clusters": "kmeans_clusters", "niter": "kmeans_niter", "max_train_rows": "kmeans_max_rows",
})
SEPARABILITY = Source.of(SeparabilityConfig, "analyze",
                         rename={"max_rows_per_group": "probe_max_rows"})
ANALYSIS = Source.of(AnalysisConfig, "analyze", fields=("tail_max_count",))
# AnalysisConfig's shot groups are the eval section's (not fields of the analyze section).
ANALYSIS_SHOTS = Source.of(AnalysisConfig, "eval", fields=("many_above", "few_below"))
SOURCES: tuple[Source, ...] = (
    OPTIM, SCHEDULE, TRAIN, PROBE, FLOW, CASCADE, CASCADE_CLASSIFIER, SHOTS, KNN, KMEANS,
    SEPARABILITY, ANALYSIS, ANALYSIS_SHOTS,
)


def _kinds_of(what: str) -> AfterValidator:
    """A validator of a list of classifier kinds (``what`` names them in errors)."""
    return AfterValidator(lambda kinds: _kinds(kinds, what))


Backbone = Annotated[str, Strict(), known(BACKBONES)]
Augmentation = Annotated[str, Strict(), known(AUGMENTATIONS)]
MethodKindName = Annotated[str, Strict(), known(tuple(METHOD_KINDS))]


OptimParams = section_model(
    "OptimParams", "SGD with momentum (every paper's optimiser, the default) or AdamW.", [OPTIM]
)
ScheduleParams = section_model(
    "ScheduleParams", "Linear warm-up, then step decay at milestones or cosine decay to zero.",
    [SCHEDULE],
)
TrainParams = section_model(
    "TrainParams",
    "Stage-1 training recipe shared by every method (a method may override any key).",
    [TRAIN],
    backbone=(Backbone, "resnet32"),
    batch_size=(Int, Field(64, ge=1)),
    augment=(Augmentation, "none"),
    num_workers=(Int, Field(0, ge=0)),
    device=(Device, "auto"),
    # Data-parallel ranks (torchrun; one per GPU); batch_size is the global batch.
    processes=(Int, Field(1, ge=1)),
    optim=(OptimParams, OptimParams()),
    schedule=(ScheduleParams, ScheduleParams()),
)


class MethodParams(StrictSection):
    """One entry of ``methods:``.

    Attributes:
        kind: the method module (``pipeline.methods.METHODS``).
        teacher: for a method that distils from a teacher (``gml_student``), the key of the
            teacher's method; each seed's student learns from the same seed's teacher, and
            dvc.yaml makes the teacher's model a dependency of the student's training.
        options: the method's hyper-parameters.
        train: overrides of any key of the ``train`` section for this method.
    """

    kind: MethodKindName
    teacher: Str | None = None
    options: dict[Str, Any] = {}
    train: dict[Str, Any] = {}


class DumpParams(StrictSection):
    """Feature dumping: batch size of the un-augmented forward passes."""

    batch_size: Int = Field(512, ge=1)
    device: Device = "auto"


ClassifyParams = section_model(
    "ClassifyParams", "Classifiers trained on the frozen features of each bank.", [PROBE],
    kinds=(Annotated[tuple[Str, ...], _kinds_of("classifier kind")],
           ("head", "linear", "balanced_softmax", "cbs_linear", "cosine")),
    device=(Device, "auto"),
)
FlowParams = section_model(
    "FlowParams", "One DLSA flow filter (DLSA supplement; ``num_clusters: null`` = half the "
    "classes).", [FLOW],
)
CascadeClassifierParams = section_model(
    "CascadeClassifierParams", "The cluster-aided classifier of each filter (constant learning "
    "rate, chosen on val).", [CASCADE_CLASSIFIER],
)
DLSAParams = section_model(
    "DLSAParams", "DLSA: cascaded flow filters and cluster-aided classifiers on top of base "
    "classifiers.", [CASCADE],
    base_kinds=(Annotated[tuple[Str, ...], _kinds_of("base classifier kind")],
                ("balanced_softmax", "cbs_linear", "cosine")),
    device=(Device, "auto"),
    flow=(FlowParams, FlowParams()),
    classifier=(CascadeClassifierParams, CascadeClassifierParams()),
)
AnalyzeParams = section_model(
    "AnalyzeParams", "Feature-quality analysis of each bank (faiss kNN, k-means, rho, head/tail "
    "probe, t-SNE).\n\nShot groups come from ``eval``; tail means at most ``tail_max_count`` "
    "training images.", [KNN, KMEANS, SEPARABILITY, ANALYSIS],
    tsne_samples=(Int, Field(500, ge=0)),
    confusion_bins=(Int, Field(10, ge=1)),
)


class MemoryParams(StrictSection):
    """Stage 2's memory budget for bank rows (classify, dlsa, analyze).

    A bank whose rows do not fit is read from disk in windows instead of loaded whole. The
    outputs are the same bytes for any budget, so no stage depends on this section.
    """

    budget_mb: Float | None = Field(4096, gt=0, allow_inf_nan=False)

    @property
    def budget_bytes(self) -> int | None:
        """The budget in bytes; None for no limit."""
        return None if self.budget_mb is None else int(self.budget_mb * 2**20)


EvalParams = section_model(
    "EvalParams", "Shot groups (many > many_above, few < few_below training images) and "
    "calibration bins.", [SHOTS],
    ece_bins=(Int, Field(15, ge=1)),
)


class Params(StrictSection):
    """The whole of params.yaml."""

    seeds: tuple[Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)], ...] = (0,)
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    methods: dict[Str, MethodParams]
    # banks from elsewhere, each filed under its key beside the methods' banks
    imports: dict[Str, ImportParams] = {}

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if not seeds:
            raise ValueError("list at least one seed")
        repeated = next((seed for seed in seeds if seeds.count(seed) > 1), None)
        if repeated is not None:
            raise ValueError(f"lists seed {repeated} twice; list each seed once")
        return seeds

    @field_validator("methods", mode="before")
    @classmethod
    def _method_names(cls, methods: Any) -> Any:
        if isinstance(methods, dict):
            for name in methods:
                problem = name_problem(name)
                if problem is not None:
                    raise ValueError(f"method key {name!r} {problem} (it names the method's "
                                     "folders, bank and DVC stages)")
        return methods

    @field_validator("imports", mode="before")
    @classmethod
    def _import_names(cls, imports: Any) -> Any:
        if isinstance(imports, dict):
            for name in imports:
                problem = name_problem(name)
                if problem is not None:
                    raise ValueError(f"import key {name!r} {problem} (it names the bank's "
                                     "folder and the stage-2 results)")
        return imports

    dump: DumpParams = DumpParams()
    classify: ClassifyParams = ClassifyParams()
    dlsa: DLSAParams = DLSAParams()
    analyze: AnalyzeParams = AnalyzeParams()
    eval: EvalParams = EvalParams()
    memory: MemoryParams = MemoryParams()
    _origin: str = PrivateAttr("params.yaml")

    def method(self, name: str) -> MethodParams:
        """The ``methods.<name>`` entry, or a one-line error listing the methods there are."""
        if name not in self.methods:
            raise StageError(
                f"{self._origin}: no method '{name}' under 'methods:'"
                f"{did_you_mean(name, tuple(self.methods))}; "
                f"defined: {', '.join(self.methods)}"
            )
        return self.methods[name]

    def imported(self, name: str) -> ImportParams:
        """The ``imports.<name>`` entry, or a one-line error listing the entries there are."""
        if name not in self.imports:
            defined = ", ".join(self.imports) or "none"
            raise StageError(
                f"{self._origin}: no entry '{name}' under 'imports:'"
                f"{did_you_mean(name, tuple(self.imports))}; defined: {defined}"
            )
        return self.imports[name]

    def train_for(self, name: str) -> TrainParams:
        """``train`` with the overrides of ``methods.<name>.train`` merged in (validated)."""
        merged = _deep_merge(self.train.model_dump(), self.method(name).train)
        return _validate(TrainParams, merged, origin=self._origin, prefix=f"methods.{name}.train")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml.

    Raises:
        StageError: one line naming the file and key at fault (missing file, bad YAML, unknown
            or misspelled key with the closest valid one, wrong type, out-of-range value,
            unknown method option).
    """
    path = Path(path)
    if not path.is_file():
        raise StageError(
            f"{path}: params file not found; run from the project root or pass --params"
        )
    try:
        raw = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise StageError(f"{path}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise StageError(f"{path}: not valid YAML{where}; fix the syntax") from None
    return parse_params(raw, origin=str(path))


def parse_params(raw: Any, origin: str) -> Params:
    """Validate already-parsed params (see :func:`load_params`); ``origin`` names the file."""
    if not isinstance(raw, dict):
        raise StageError(
            f"{origin}: expected a mapping of sections (seed, data, train, methods, ...)"
        )
    params = _validate(Params, raw, origin=origin)
    params._origin = origin
    if not params.methods and not params.imports:
        raise StageError(f"{origin}: methods: define at least one method (or a bank under "
                         "imports:)")
    shared = next((name for name in params.imports if name in params.methods), None)
    if shared is not None:
        raise StageError(f"{origin}: imports.{shared}: also a key of methods:, whose bank it "
                         "would overwrite; rename one of them")
    for name, entry in params.methods.items():
        _check_method_options(name, entry, origin=origin)
        _check_teacher(name, entry, params.methods, origin=origin)
        params.train_for(name)
    from stages.configs import check_library_configs

    check_library_configs(params, origin)
    return params


def _check_teacher(
    name: str, entry: MethodParams, methods: dict[str, MethodParams], origin: str
) -> None:
    """A distilling method names another method as its teacher; no other method names one."""
    needs_teacher = METHOD_KINDS[entry.kind].needs_teacher
    if entry.teacher is None and not needs_teacher:
        return
    key = f"methods.{name}.teacher"
    if not needs_teacher:
        raise StageError(f"{origin}: {key}: '{entry.kind}' learns without a teacher; remove "
                         "the key")
    others = [other for other in methods if other != name]
    if entry.teacher is None or entry.teacher not in others:
        given = "is missing" if entry.teacher is None else f"'{entry.teacher}' is not a method"
        raise StageError(f"{origin}: {key} {given}: '{entry.kind}' distils from a teacher; name "
                         f"one of: {', '.join(others)}")
    if methods[entry.teacher].teacher is not None:
        raise StageError(f"{origin}: {key}: '{entry.teacher}' learns from a teacher itself; "
                         "name a method trained on its own")


def section_digest(*sections: Any) -> str:
    """sha256 of the canonical JSON of some params sections (provenance in banks and models),
    without their machine-only keys (`stages.machine`): where and on what a model was trained
    is not what it is."""
    import hashlib

    payload = [_digested(s) if isinstance(s, BaseModel) else s for s in sections]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _digested(section: BaseModel) -> Any:
    name = {DataParams: "data", TrainParams: "train", DumpParams: "dump"}.get(type(section))
    if name is None:
        return section.model_dump(mode="json")
    left_out = machine_fields(name, getattr(section, "dataset", None))
    return section.model_dump(mode="json", exclude=set(left_out))


def _check_method_options(name: str, entry: MethodParams, origin: str) -> None:
    """Each key of ``methods.<name>.options`` is an option of the method's kind (their values
    are checked by building the options, see `stages.configs.check_library_configs`)."""
    valid = tuple(method_options_fields(entry.kind))
    prefix = f"methods.{name}.options."
    for key in entry.options:
        if key not in valid:
            hint = (
                did_you_mean(key, valid, prefix=prefix) if closest(key, valid)
                else f"; valid: {', '.join(valid)}" if valid
                else f"; method kind '{entry.kind}' takes no options"
            )
            raise StageError(f"{origin}: unknown key 'methods.{name}.options.{key}'{hint}")


def _validate(model: SchemaModel, raw: Any, origin: str, prefix: str = "") -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise StageError(_describe(error, model, origin, prefix)) from None


def _describe(error: ValidationError, model: SchemaModel, origin: str, prefix: str) -> str:
    """Turn pydantic's first error into one line: file, dotted key, what is wrong, a fix."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    key = ".".join(([prefix] if prefix else []) + location)
    if first["type"] == "extra_forbidden":
        siblings = _field_names(model, location[:-1])
        parent = key[: len(key) - len(location[-1])]
        hint = did_you_mean(location[-1], siblings, prefix=parent) or (
            f"; valid keys here: {', '.join(siblings)}" if siblings else "")
        return f"{origin}: unknown key '{key}'{hint}"
    if first["type"] == "missing":
        return f"{origin}: key '{key}' is required"
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{origin}: {key}: {message}{shown}"


def _field_names(model: SchemaModel, location: list[str]) -> tuple[str, ...]:
    """Valid keys at a dotted location of the schema (for 'did you mean')."""
    current: Any = model
    parts = list(location)
    while parts:
        fields = getattr(current, "model_fields", {})
        field = fields.get(parts.pop(0))
        if field is None:
            return ()
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            # methods.<name>: the next part is a user-chosen key, then the entry's fields
            if not parts:
                return ()
            parts.pop(0)
            annotation = typing.get_args(annotation)[1]
        current = _model_of(annotation)
    return tuple(getattr(current, "model_fields", {}))


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as ``X`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _kinds(kinds: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Known classifier kinds, each listed once (a repeated kind would be trained twice)."""
    if not kinds:
        raise ValueError(f"list at least one {what}")
    for kind in kinds:
        one_of(kind, CLASSIFIER_KINDS)
        if kinds.count(kind) > 1:
            raise ValueError(f"lists '{kind}' twice; list each {what} once")
    return kinds


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
