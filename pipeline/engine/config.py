"""The training recipe: optimiser, learning-rate schedule, epochs and seed."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.errors import PipelineError

SCHEDULES: tuple[str, ...] = ("step", "cosine")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class OptimConfig:
    """SGD hyper-parameters (the base learning rate is the peak after warm-up)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise PipelineError(f"optim.lr must be > 0, got {self.lr}; set a positive rate")
        if self.momentum < 0 or self.weight_decay < 0:
            raise PipelineError(
                f"optim.momentum ({self.momentum}) and optim.weight_decay "
                f"({self.weight_decay}) must be >= 0"
            )
        if self.nesterov and self.momentum == 0:
            raise PipelineError("optim.nesterov needs optim.momentum > 0; set one or the other")


@dataclass(frozen=True)
class ScheduleConfig:
    """Linear warm-up, then step decay at milestones (epochs) or a cosine decay to zero."""

    kind: str = "step"
    warmup_epochs: int = 5
    milestones: tuple[int, ...] = field(default=(160, 180))
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise PipelineError(
                f"schedule.kind '{self.kind}' is unknown; use one of {', '.join(SCHEDULES)}"
            )
        if self.warmup_epochs < 0:
            raise PipelineError(f"schedule.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if list(self.milestones) != sorted(self.milestones):
            raise PipelineError(
                f"schedule.milestones must be increasing, got {list(self.milestones)}; sort them"
            )
        if not self.gamma > 0:
            raise PipelineError(f"schedule.gamma must be > 0, got {self.gamma}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything the training loop needs besides the method and the data.

    Attributes:
        epochs: passes over the training loader.
        optim: the SGD settings.
        schedule: the learning-rate schedule.
        seed: seeds the global random state at the start of a fresh (not resumed) run.
        max_grad_norm: clip the global gradient norm to this value; ``None`` = no clipping.
        sync_batchnorm: under torch.distributed on CUDA, normalise with the statistics of
            the global batch (SyncBatchNorm); CPU ranks average running statistics per epoch.
        precision: "fp32", or mixed precision with "bf16" / "fp16" autocast of the training
            forward pass (fp16 adds a gradient scaler; CUDA only).
        deterministic: on CUDA, deterministic kernels for bit-identical runs (slower).
    """

    epochs: int
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    seed: int = 0
    max_grad_norm: float | None = None
    sync_batchnorm: bool = True
    precision: str = "fp32"
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise PipelineError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise PipelineError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")
        if self.precision not in PRECISIONS:
            raise PipelineError(
                f"precision '{self.precision}' is unknown; use one of {', '.join(PRECISIONS)}"
            )
