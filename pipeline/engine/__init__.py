"""The training engine: per-iteration schedule, best-on-val selection, atomic resume.

Knows nothing of DVC, params.yaml or HDF5: it takes a method, two loaders and a recipe.
"""

from core.lazy import lazy_package

# Each name is imported from its module on first use: validating params imports the
# torch-free modules of this package (names, options, configs) without torch.
_EXPORTS: dict[str, str] = {
    "CHECKPOINT_FORMAT": "pipeline.engine.checkpoint",
    "load_checkpoint": "pipeline.engine.checkpoint",
    "save_checkpoint": "pipeline.engine.checkpoint",
    "SCHEDULES": "pipeline.engine.config",
    "OptimConfig": "pipeline.engine.config",
    "ScheduleConfig": "pipeline.engine.config",
    "TrainConfig": "pipeline.engine.config",
    "NonFiniteError": "pipeline.errors",
    "evaluate_accuracy": "pipeline.engine.loop",
    "train": "pipeline.engine.loop",
    "EpochRecord": "pipeline.engine.records",
    "TrainResult": "pipeline.engine.records",
    "lr_at": "pipeline.engine.schedule",
    "set_seed": "pipeline.engine.seeding",
}
__all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS)
