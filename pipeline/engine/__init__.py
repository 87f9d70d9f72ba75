"""The training engine: per-iteration schedule, best-on-val selection, atomic resume.

Knows nothing of DVC, params.yaml or HDF5: it takes a method, two loaders and a recipe.
"""

from pipeline.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from pipeline.engine.config import SCHEDULES, OptimConfig, ScheduleConfig, TrainConfig
from pipeline.engine.loop import evaluate_accuracy, train
from pipeline.engine.records import EpochRecord, TrainResult
from pipeline.engine.schedule import lr_at
from pipeline.engine.seeding import set_seed
from pipeline.errors import NonFiniteError

__all__ = [
    "CHECKPOINT_FORMAT",
    "SCHEDULES",
    "EpochRecord",
    "NonFiniteError",
    "OptimConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "evaluate_accuracy",
    "load_checkpoint",
    "lr_at",
    "save_checkpoint",
    "set_seed",
    "train",
]
