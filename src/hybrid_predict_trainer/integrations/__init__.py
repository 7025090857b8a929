"""Ways to adopt the trainer in an existing setup.

- :func:`wrap` (plain PyTorch loops): one ``hybrid.step(lambda: loss)`` call per batch.
- :class:`RunningStats`: the figures progress bars and loggers show (phase, saved backward
  passes, speed-up estimate), fed by the trainer's hooks.
- ``integrations.tensorboard.TensorBoardHook`` (extra ``[tensorboard]``) and
  ``integrations.lightning.HybridMixin`` (extra ``[lightning]``) are imported from their own
  modules so that the core install never imports those packages.
"""
from __future__ import annotations

from .loop import wrap
from .scalars import PHASE_CODES, RunningStats

__all__ = ["wrap", "RunningStats", "PHASE_CODES"]
