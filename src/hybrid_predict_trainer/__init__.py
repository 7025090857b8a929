"""hybrid-predict-trainer: train PyTorch models with verified, really-applied predicted steps,
and a health monitor that refuses silent failure."""
from __future__ import annotations

from .config import HybridConfig
from .errors import (CheckpointError, ConfigError, HealthError, HPTError, LossError,
                     TrainerStateError)
from .metrics import StepResult
from .phases import Phase, Transition
from .predictors import Predictor
from .trainer import HybridTrainer, HybridWarning

__version__ = "0.1.0"


def __getattr__(name: str):  # the monitor is imported lazily: it patches loss functions
    if name in ("watch", "HealthMonitor", "Finding"):
        from . import monitor
        return getattr(monitor, name)
    raise AttributeError(name)


__all__ = ["HybridTrainer", "HybridConfig", "HybridWarning", "StepResult", "Phase",
           "Transition", "Predictor", "watch", "HealthMonitor", "Finding", "HPTError",
           "ConfigError", "CheckpointError", "LossError", "TrainerStateError", "HealthError"]
