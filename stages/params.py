"""The typed schema of params.yaml: every key validated on load, with one-line errors.

Each DVC stage reads only the sections that dvc.yaml lists for it, so a change to one
section re-runs only the stages that depend on it:

- ``seed``, ``data``                          -> prepare
- ``seed``, ``data``, ``train``, ``methods.<m>`` -> pretrain@<m>
- ``data``, ``dump``                          -> dump@<m>
- ``seed``, ``classify``, ``eval``              -> classify@<m>
- ``seed``, ``analyze``, ``eval``               -> analyze@<m>

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
    SerializerFunctionWrapHandler,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
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
    DATASETS,
    FILE_DATASETS,
    PROFILED_TRAIN_POOL_DATASETS,
    VAL_SOURCES,
)
from pipeline.engine.config import OptimConfig, ScheduleConfig, TrainConfig
from pipeline.methods.kinds import METHOD_KINDS, method_options_fields
from pipeline.models.names import BACKBONES
from stages.errors import StageError
from stages.sections import (
    Bool,
    Device,
    Float,
    Int,
    Source,
    Str,
    StrictSection,
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
    "num_filters", "routed_share", "latent", "remainder", "init", "gate_share", "tail_max_count",
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
KNN = Source.of(KnnConfig, "analyze", fields=("k", "chunk_rows", "ivf_above", "nprobe", "use_gpu"))
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


def _known(choices: tuple[str, ...]) -> AfterValidator:
    """A validator of a name among ``choices`` (a torch-free registry's names)."""
    return AfterValidator(lambda name: one_of(name, choices))


def _kinds_of(what: str) -> AfterValidator:
    """A validator of a list of classifier kinds (``what`` names them in errors)."""
    return AfterValidator(lambda kinds: _kinds(kinds, what))


Dataset = Annotated[str, Strict(), _known(DATASETS)]
Backbone = Annotated[str, Strict(), _known(BACKBONES)]
Augmentation = Annotated[str, Strict(), _known(AUGMENTATIONS)]
ValSource = Annotated[str, Strict(), _known(VAL_SOURCES)]
MethodKindName = Annotated[str, Strict(), _known(tuple(METHOD_KINDS))]


class SplitLists(StrictSection):
    """Split list files of the list datasets (ImageNet-LT, Places-LT, iNaturalist 2018) and of
    ``image_list`` (``train`` required there)."""

    train: Str | None = None
    val: Str | None = None
    test: Str | None = None


class SplitFolders(StrictSection):
    """Class-folder trees of ``image_folder``, absolute or relative to ``data.root``.

    ``train: null`` is ``data.root`` itself; a val or test folder left null means that split is
    carved out of the training images (``val_per_class`` / ``test_per_class`` per class).
    """

    train: Str | None = None
    val: Str | None = None
    test: Str | None = None


class DataParams(StrictSection):
    """Which images, and how the long-tailed train / balanced val / test splits are made.

    ``split_seed`` draws the splits; it is not one of the training ``seeds``, so every seed
    trains on the same images and is tested on the same rows (paired comparisons need that).
    """

    dataset: Dataset = "digits_lt"
    root: Str = "data/raw"
    download: Bool = False
    split_seed: Int = Field(0, ge=0, le=MAX_SEED)
    imbalance_factor: Float = Field(20.0, ge=1.0)
    max_per_class: Int | None = Field(None, ge=1)
    val_per_class: Int = Field(10, ge=1)
    test_per_class: Int = Field(40, ge=1)
    # validated even when left out: image_list needs its training list
    lists: SplitLists = Field(SplitLists(), validate_default=True)
    # Keys after this line are left out of the section's dump at their default (see _dump).
    # The side of the square images the model sees, for datasets read from image files
    # (null: 224); the in-memory datasets keep their own size.
    image_size: Int | None = Field(None, ge=8)
    # Where the balanced val split of a profiled torchvision dataset comes from: "train" holds
    # it out before the profile; "left_out" keeps the papers' train set (the profile over the
    # whole train pool, as LDAM draws CIFAR-LT) and takes val from what the profile left out.
    val_from: ValSource = "train"
    folders: SplitFolders = SplitFolders()

    @field_validator("lists")
    @classmethod
    def _lists_for(cls, lists: SplitLists, info: ValidationInfo) -> SplitLists:
        dataset = info.data.get("dataset")
        if dataset == "image_folder" and lists != SplitLists():
            raise ValueError("image_folder reads class folders, not lists; use data.folders "
                             "(or data.dataset: image_list)")
        if dataset == "image_list" and lists.train is None:
            raise ValueError("image_list needs data.lists.train, the list of training images "
                             "('<relative/path> <integer label>' per line)")
        return lists

    @field_validator("image_size")
    @classmethod
    def _image_size_for(cls, image_size: int | None, info: ValidationInfo) -> int | None:
        dataset = info.data.get("dataset")
        if image_size is not None and dataset is not None and dataset not in FILE_DATASETS:
            raise ValueError(f"{dataset} is held in memory at its own size; remove the key (it "
                             f"applies to {', '.join(FILE_DATASETS)})")
        return image_size

    @field_validator("val_from")
    @classmethod
    def _val_from_for(cls, val_from: str, info: ValidationInfo) -> str:
        dataset = info.data.get("dataset")
        if val_from == "left_out" and dataset is not None and (
                dataset not in PROFILED_TRAIN_POOL_DATASETS):
            raise ValueError(f"'left_out' applies to a profile drawn from a train pool "
                             f"({', '.join(PROFILED_TRAIN_POOL_DATASETS)}), not to {dataset}; "
                             "remove the key")
        return val_from

    @field_validator("folders")
    @classmethod
    def _folders_for(cls, folders: SplitFolders, info: ValidationInfo) -> SplitFolders:
        dataset = info.data.get("dataset")
        if folders != SplitFolders() and dataset is not None and dataset != "image_folder":
            raise ValueError(f"class folders apply to image_folder, not to {dataset}; remove "
                             "the key")
        return folders

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The section as a dict, without the keys added later that are at their default.

        Model checkpoints and banks store `section_digest` of this dump, so its JSON is part of
        their bytes. Leaving a later key out while it has its default keeps the digest of
        params that do not use the key as it was before the key existed, and with it every
        model and bank byte for byte; a key set to anything else is digested as usual.
        """
        dumped = handler(self)
        for key in DATA_KEYS_DIGESTED_WHEN_SET:
            if getattr(self, key) == type(self).model_fields[key].default:
                dumped.pop(key, None)
        return dumped


# Keys of `data` added after outputs began to carry digests of the section (see _dump).
DATA_KEYS_DIGESTED_WHEN_SET: tuple[str, ...] = ("image_size", "val_from", "folders")


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


IMPORT_KINDS = ("imported", "checkpoint")
ImportKind = Annotated[str, Strict(), _known(IMPORT_KINDS)]
SEED_PLACEHOLDER = "{seed}"


class ImportParams(StrictSection):
    """One entry of ``imports:``: a bank from elsewhere, filed as ``banks/<key>/seed<k>.h5``.

    Stage 2 (classify, dlsa, analyze) runs on it with ``--method <key>`` like on a method's.

    Attributes:
        kind: ``imported``: ``source`` holds features computed elsewhere (`tailbank
            import-bank`); ``checkpoint``: ``source`` holds the weights of a network trained
            elsewhere, whose features of ``data``'s images are dumped (`tailbank dump`).
        source: the file (a folder of .npy files for ``imported``), relative to the project;
            ``{seed}`` in it is replaced by each seed of ``seeds:`` (one file per seed).
        backbone: ``checkpoint``: the architecture of the weights (required); ``imported``:
            the network's name, for the report.
        dataset: ``imported``: the data set's name, for the report (``checkpoint`` uses
            ``data.dataset``).
    """

    kind: ImportKind
    source: Str
    backbone: Str | None = None
    dataset: Str | None = None

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ImportParams:
        if self.kind == "checkpoint":
            if self.backbone is None:
                raise ValueError("kind 'checkpoint' needs backbone: the architecture of the "
                                 f"weights (one of {', '.join(BACKBONES)})")
            one_of(self.backbone, BACKBONES)
            if self.dataset is not None:
                raise ValueError("kind 'checkpoint' dumps data.dataset; remove dataset")
        return self

    def source_of(self, seed: int) -> Path:
        """The source file of one seed."""
        return Path(self.source.replace(SEED_PLACEHOLDER, str(seed)))


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
            if not methods:
                raise ValueError("define at least one method")
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
    """sha256 of the canonical JSON of some params sections (provenance in banks and models)."""
    import hashlib

    payload = [s.model_dump(mode="json") if isinstance(s, BaseModel) else s for s in sections]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


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
