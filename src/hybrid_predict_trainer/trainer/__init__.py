"""The hybrid trainer: one :meth:`HybridTrainer.step` per batch.

- ``hybrid_trainer``: ``HybridTrainer``, the real step, its checks, rollbacks and explanations;
- ``jumps``, ``segments``, ``state``: its checked jumps onto the slow weights, its predicted
  segments, and its state and checkpoints (parts of the one class, a file each);
- ``closure``: runs the user's closure and refuses a wrong loss before backward sees it;
- ``progress``: what a predicted step is worth in real steps, measured (eta);
- ``inputs``: the optimizer, settings and parameter set the user hands it, checked;
- ``fit``: whether a checkpoint fits this model, optimizer and predictor;
- ``rng``: the random-number state of paired checks and of checkpoints.
"""
from ..errors import HybridWarning
from .closure import Closure, ClosureOutput
from .hybrid_trainer import HybridTrainer

__all__ = ["Closure", "ClosureOutput", "HybridTrainer", "HybridWarning"]
