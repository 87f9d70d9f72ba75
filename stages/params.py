"""The typed schema of params.yaml: every key validated on load, with one-line errors.

Each DVC stage reads only the sections that dvc.yaml lists for it, so a change to one
section re-runs only the stages that depend on it:

- ``seed``, ``data``                          -> prepare
- ``seed``, ``data``, ``train``, ``methods.<m>`` -> pretrain@<m>
- ``data``, ``dump``                          -> dump@<m>
- ``seed``, ``classify``, ``eval``              -> classify@<m>
- ``seed``, ``analyze``, ``eval``               -> analyze@<m>
"""

from __future__ import annotations

import difflib
import json
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
)

from stages.errors import StageError
from stages.names import name_problem

SchemaModel = type[BaseModel]
# numpy, torch and faiss all take seeds below 2**30, with room for per-stream offsets
MAX_SEED = 2**30 - 1

# Values are never coerced: `epochs: true` or `lr: "0.1"` are errors, not 1 and 0.1. An int is
# a valid float (YAML writes 1.0 as 1 when a user types it so).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]


class _Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are never coerced silently, and
    numbers are finite."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SplitLists(_Strict):
    """Split list files of the list datasets (ImageNet-LT, Places-LT, iNaturalist 2018)."""

    train: Str | None = None
    val: Str | None = None
    test: Str | None = None


class DataParams(_Strict):
    """Which images, and how the long-tailed train / balanced val / test splits are made.

    ``split_seed`` draws the splits; it is not one of the training ``seeds``, so every seed
    trains on the same images and is tested on the same rows (paired comparisons need that).
    """

    dataset: Str = "digits_lt"
    root: Str = "data/raw"
    download: Bool = False
    split_seed: Int = Field(0, ge=0, le=MAX_SEED)
    imbalance_factor: Float = Field(20.0, ge=1.0)
    max_per_class: Int | None = Field(None, ge=1)
    val_per_class: Int = Field(10, ge=1)
    test_per_class: Int = Field(40, ge=1)
    lists: SplitLists = SplitLists()

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from pipeline.data import DATASETS

        return _one_of(name, DATASETS)


class OptimParams(_Strict):
    """SGD with momentum (every paper's optimiser)."""

    lr: Float = Field(0.1, gt=0)
    momentum: Float = Field(0.9, ge=0, lt=1)
    weight_decay: Float = Field(5e-4, ge=0)
    nesterov: Bool = False


class ScheduleParams(_Strict):
    """Linear warm-up, then step decay at milestones or cosine decay to zero."""

    kind: Literal["step", "cosine"] = "cosine"
    warmup_epochs: Int = Field(0, ge=0)
    milestones: tuple[Int, ...] = ()
    gamma: Float = Field(0.1, gt=0, le=1)


class TrainParams(_Strict):
    """Stage-1 training recipe shared by every method (a method may override any key)."""

    backbone: Str = "resnet32"
    epochs: Int = Field(30, ge=1)
    batch_size: Int = Field(64, ge=1)
    augment: Str = "none"
    num_workers: Int = Field(0, ge=0)
    device: Str = "auto"
    # Data-parallel ranks (torchrun; one per GPU); batch_size is the global batch.
    processes: Int = Field(1, ge=1)
    sync_batchnorm: Bool = True
    precision: Str = "fp32"
    deterministic: Bool = False
    max_grad_norm: Float | None = Field(None, gt=0)
    optim: OptimParams = OptimParams()
    schedule: ScheduleParams = ScheduleParams()

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        from pipeline.models import BACKBONES

        return _one_of(name, BACKBONES)

    @field_validator("augment")
    @classmethod
    def _known_augment(cls, name: str) -> str:
        from pipeline.data import AUGMENTATIONS

        return _one_of(name, AUGMENTATIONS)

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, name: str) -> str:
        from pipeline.engine.config import PRECISIONS

        return _one_of(name, PRECISIONS)

    @field_validator("device")
    @classmethod
    def _known_device(cls, name: str) -> str:
        if name in ("auto", "cpu", "cuda") or name.startswith("cuda:"):
            return name
        raise ValueError(f"'{name}' is not a device; use auto, cpu, cuda or cuda:N")


class MethodParams(_Strict):
    """One entry of ``methods:``.

    Attributes:
        kind: the method module (``pipeline.methods.METHODS``).
        teacher: for a method that distils from a teacher (``gml_student``), the key of the
            teacher's method; each seed's student learns from the same seed's teacher, and
            dvc.yaml makes the teacher's model a dependency of the student's training.
        options: the method's hyper-parameters.
        train: overrides of any key of the ``train`` section for this method.
    """

    kind: Str
    teacher: Str | None = None
    options: dict[Str, Any] = {}
    train: dict[Str, Any] = {}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, name: str) -> str:
        from pipeline.methods import METHODS

        return _one_of(name, tuple(METHODS))


class DumpParams(_Strict):
    """Feature dumping: batch size of the un-augmented forward passes."""

    batch_size: Int = Field(512, ge=1)
    device: Str = "auto"


class ClassifyParams(_Strict):
    """Classifiers trained on the frozen features of each bank."""

    kinds: tuple[Str, ...] = ("head", "linear", "balanced_softmax", "cbs_linear", "cosine")
    epochs: Int = Field(30, ge=1)
    batch_size: Int = Field(128, ge=1)
    lr: Float = Field(0.1, gt=0)
    momentum: Float = Field(0.9, ge=0, lt=1)
    weight_decay: Float = Field(5e-4, ge=0)
    cosine_scale: Float = Field(16.0, gt=0)
    crt_epochs: Int = Field(10, ge=1)
    lws_epochs: Int = Field(10, ge=1)
    tau_grid: tuple[Float, ...] = tuple(round(0.1 * i, 1) for i in range(21))
    device: Str = "auto"

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        return _kinds(kinds, "classifier kind")


class FlowParams(_Strict):
    """One DLSA flow filter (DLSA supplement; ``num_clusters: null`` = half the classes)."""

    num_clusters: Int | None = Field(None, ge=1)
    epochs: Int = Field(30, ge=1)
    batch_size: Int = Field(256, ge=1)
    lr: Float = Field(0.01, gt=0)
    lr_scale: Str = "weight"
    momentum: Float = Field(0.0, ge=0, lt=1)
    weight_decay: Float = Field(0.0, ge=0)
    q: Float = Field(2.0, ge=0)
    lambda_bal: Float = Field(1.0, ge=0)
    lambda_pure: Float = Field(0.02, ge=0)
    eta: Float = Field(0.7, ge=0, lt=1)
    weighted_mle: Bool = True
    use_balance: Bool = True
    use_purity: Bool = True
    mle: Str = "eq7"
    mle_sampler: Str = "instance"
    selection: Str = "purity"
    purity_threshold: Float = Field(0.7, ge=0, lt=1)
    min_cluster_size: Int = Field(10, ge=0)
    sigma: Float | None = Field(None, gt=0)
    affine: Str = "maf"

    @field_validator("selection")
    @classmethod
    def _known_selection(cls, name: str) -> str:
        return _one_of(name, ("purity", "likelihood"))


class CascadeClassifierParams(_Strict):
    """The cluster-aided classifier of each filter (constant learning rate, chosen on val)."""

    epochs: Int = Field(50, ge=1)
    batch_size: Int = Field(128, ge=1)
    lr: Float = Field(0.01, gt=0)
    momentum: Float = Field(0.0, ge=0, lt=1)
    weight_decay: Float = Field(0.0, ge=0)
    min_val_rows: Int = Field(10, ge=0)


class DLSAParams(_Strict):
    """DLSA: cascaded flow filters and cluster-aided classifiers on top of base classifiers."""

    base_kinds: tuple[Str, ...] = ("balanced_softmax", "cbs_linear", "cosine")
    num_filters: Int = Field(3, ge=1)
    routed_share: Float = Field(0.3, gt=0, lt=1)
    latent: Str = "flow"
    remainder: Str = "refit"
    init: Str = "head"
    gate_share: Float = 0.5
    tail_max_count: Int = Field(50, ge=0)
    device: Str = "auto"
    flow: FlowParams = FlowParams()
    classifier: CascadeClassifierParams = CascadeClassifierParams()

    @field_validator("base_kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        return _kinds(kinds, "base classifier kind")

    @field_validator("latent")
    @classmethod
    def _known_latent(cls, name: str) -> str:
        return _one_of(name, ("flow", "feature"))

    @field_validator("device")
    @classmethod
    def _known_device(cls, name: str) -> str:
        return TrainParams._known_device(name)


class AnalyzeParams(_Strict):
    """Feature-quality analysis of each bank (faiss kNN, k-means, rho, head/tail probe, t-SNE).

    Shot groups come from ``eval``; tail means at most ``tail_max_count`` training images.
    """

    k: Int = Field(10, ge=1)
    chunk_rows: Int = Field(8192, ge=1)
    ivf_above: Int = Field(200_000, ge=1)
    nprobe: Int = Field(32, ge=1)
    kmeans_clusters: Int | None = Field(None, ge=1)
    kmeans_niter: Int = Field(20, ge=1)
    kmeans_max_rows: Int = Field(100_000, ge=1)
    probe_max_rows: Int = Field(20_000, ge=1)
    tail_max_count: Int = Field(50, ge=0)
    tsne_samples: Int = Field(500, ge=0)
    confusion_bins: Int = Field(10, ge=1)
    use_gpu: Bool | Literal["auto"] = "auto"


class MemoryParams(_Strict):
    """Stage 2's memory budget for bank rows (classify, dlsa, analyze).

    A bank whose rows do not fit is read from disk in windows instead of loaded whole. The
    outputs are the same bytes for any budget, so no stage depends on this section.
    """

    budget_mb: Float | None = Field(4096, gt=0, allow_inf_nan=False)

    @property
    def budget_bytes(self) -> int | None:
        """The budget in bytes; None for no limit."""
        return None if self.budget_mb is None else int(self.budget_mb * 2**20)


class EvalParams(_Strict):
    """Shot groups (many > many_above, few < few_below training images) and calibration bins."""

    many_above: Int = Field(100, ge=1)
    few_below: Int = Field(20, ge=1)
    ece_bins: Int = Field(15, ge=1)


class Params(_Strict):
    """The whole of params.yaml."""

    seeds: tuple[Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)], ...] = (0,)
    data: DataParams = DataParams()
    train: TrainParams = TrainParams()
    methods: dict[Str, MethodParams]

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
                f"{_suggestion(name, tuple(self.methods))}; "
                f"defined: {', '.join(self.methods)}"
            )
        return self.methods[name]

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
    from pipeline.methods import METHODS

    needs_teacher = METHODS[entry.kind].needs_teacher
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
    from pipeline.methods import method_options_fields

    valid = tuple(method_options_fields(entry.kind))
    for key in entry.options:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = (
                f" (did you mean 'methods.{name}.options.{close[0]}'?)" if close
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
        close = difflib.get_close_matches(location[-1], siblings, n=1, cutoff=0.6)
        hint = f" (did you mean '{parent}{close[0]}'?)" if close else (
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


def _suggestion(word: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _one_of(name: str, choices: tuple[str, ...]) -> str:
    if name in choices:
        return name
    raise ValueError(f"unknown name '{name}'{_suggestion(name, choices)}; choose one of: "
                     f"{', '.join(choices)}")


def _kinds(kinds: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Known classifier kinds, each listed once (a repeated kind would be trained twice)."""
    from features.configs import CLASSIFIER_KINDS

    if not kinds:
        raise ValueError(f"list at least one {what}")
    for kind in kinds:
        _one_of(kind, CLASSIFIER_KINDS)
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
