"""The training recipe: optimiser, learning-rate schedule, epochs and seed."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

from core.constraints import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    SEED,
    UNIT_OPEN_HIGH,
    Constrained,
    Flag,
    Interval,
    ListOf,
    OneOf,
    Rule,
)
from pipeline.errors import ConfigError

SCHEDULES: tuple[str, ...] = ("step", "cosine")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
# The fields only AdamW reads.
ADAMW_ONLY: tuple[str, ...] = ("betas", "eps")


@dataclass(frozen=True)
class OptimConfig(Constrained, error=ConfigError):
    """The optimiser and its hyper-parameters (the base learning rate is the peak after warm-up).

    Attributes:
        lr: the peak learning rate of the schedule (AdamW wants far less than SGD's 0.1,
            e.g. 1e-3).
        momentum: SGD's momentum (AdamW ignores it; its ``betas`` play that part).
        weight_decay: SGD's L2 penalty, or AdamW's decoupled decay (Loshchilov & Hutter 2019;
            torch scales it by the learning rate, so AdamW wants a larger one, e.g. 0.05).
        nesterov: SGD's Nesterov momentum.
        kind: "sgd" (every paper's optimiser, the default) or "adamw".
        betas: AdamW's (beta1, beta2) running-average factors of the gradient and its square.
        eps: AdamW's term added to the denominator for numerical stability.
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    kind: str = "sgd"
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "lr": POSITIVE,
        "momentum": UNIT_OPEN_HIGH,
        "weight_decay": NON_NEGATIVE,
        "nesterov": Flag(),
        "kind": OneOf(OPTIMIZERS),
        "betas": ListOf(UNIT_OPEN_HIGH, repeats=True),
        "eps": POSITIVE,
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.betas) != 2:
            raise ConfigError("OptimConfig", "betas", "must list two values, beta1 and beta2",
                              list(self.betas))
        if self.nesterov and self.momentum == 0:
            raise ConfigError("OptimConfig", "nesterov", "needs momentum > 0; set one or the "
                              "other", self.nesterov)
        if self.kind != "sgd" and self.nesterov:
            raise ConfigError("OptimConfig", "nesterov", f"is SGD's; {self.kind} has none: drop "
                              "it or set kind: sgd", self.nesterov)
        if self.kind == "sgd":
            # AdamW's settings given to SGD are a mistake in the params, not a no-op to ignore
            defaults = {entry.name: entry.default for entry in fields(self)}
            for name in ADAMW_ONLY:
                if getattr(self, name) != defaults[name]:
                    raise ConfigError("OptimConfig", name, "is AdamW's; set kind: adamw or drop "
                                      "it", getattr(self, name))


@dataclass(frozen=True)
class ScheduleConfig(Constrained, error=ConfigError):
    """Linear warm-up, then step decay at milestones (epochs) or a cosine decay to zero.

    The defaults (cosine, no warm-up) are also the params' defaults; the papers' CIFAR recipe
    is step decay with ``warmup_epochs=5, milestones=(160, 180)`` over 200 epochs.
    """

    kind: str = "cosine"
    warmup_epochs: int = 0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "kind": OneOf(SCHEDULES),
        "warmup_epochs": NON_NEGATIVE_INT,
        "milestones": ListOf(POSITIVE_INT, allow_empty=True, increasing=True),
        "gamma": Interval(0, 1, low_open=True),
    }


@dataclass(frozen=True)
class TrainConfig(Constrained, error=ConfigError):
    """Everything the training loop needs besides the method and the data.

    Attributes:
        epochs: passes over the training loader (30: the default data set, scikit-learn's
            digits, needs few; the papers' CIFAR recipe is 200).
        optim: the optimiser and its settings.
        schedule: the learning-rate schedule; its warm-up must end, and its milestones fall,
            within ``epochs`` (otherwise the rate never reaches its target or never decays).
        seed: seeds the global random state at the start of a fresh (not resumed) run.
        max_grad_norm: clip the global gradient norm to this value; ``None`` = no clipping.
        sync_batchnorm: under torch.distributed on CUDA, normalise with the statistics of
            the global batch (SyncBatchNorm); CPU ranks average running statistics per epoch.
        precision: "fp32", or mixed precision with "bf16" / "fp16" autocast of the training
            forward pass (fp16 adds a gradient scaler; CUDA only).
        deterministic: on CUDA, deterministic kernels for bit-identical runs (slower).
    """

    epochs: int = 30
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    max_grad_norm: float | None = None
    sync_batchnorm: bool = True
    precision: str = "fp32"
    deterministic: bool = False

    CONSTRAINTS: ClassVar[dict[str, Rule]] = {
        "epochs": POSITIVE_INT,
        "seed": SEED,
        "max_grad_norm": Interval(0, low_open=True, optional=True),
        "sync_batchnorm": Flag(),
        "precision": OneOf(PRECISIONS),
        "deterministic": Flag(),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        warmup = self.schedule.warmup_epochs
        if warmup > self.epochs:
            raise ConfigError("ScheduleConfig", "warmup_epochs", f"must be at most the "
                              f"{self.epochs} epochs (the rate would never reach its target)",
                              warmup)
        late = [epoch for epoch in self.schedule.milestones if epoch > self.epochs]
        if late:
            raise ConfigError("ScheduleConfig", "milestones", f"must lie within the "
                              f"{self.epochs} epochs ({late[0]} would never be reached)",
                              list(self.schedule.milestones))
