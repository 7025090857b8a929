"""The predictor protocol: how a dynamics model plugs into the trainer.

Why this shape (like ``torch.optim``'s narrow protocol): a predictor only *observes* real
updates (flat vectors of what the optimizer really did, plus scalar features) and *forecasts*
the next update for position ``i`` of a segment. It never touches the parameters itself; the
trainer applies, verifies and rolls back. That keeps user predictors small and makes every
predictor testable on plain vectors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class Observation:
    """One real optimizer step: its flat update and the scalar features around it."""

    update: torch.Tensor
    loss: float
    grad_norm: float
    lr: float


@dataclass(frozen=True)
class Forecast:
    """The update to apply at one predicted step, and (optionally) the loss expected after it."""

    delta: torch.Tensor
    loss: float | None = None


@runtime_checkable
class Predictor(Protocol):
    """What the trainer needs from a predictor. See ``continuation.py`` for a 60-line example."""

    name: str

    def observe(self, obs: Observation) -> None:
        """Record a real update. Called after every real optimizer step."""

    def ready(self) -> bool:
        """True once enough updates were observed to forecast."""

    def agreement(self) -> float:
        """How much the predictor trusts its own forecast, in [0, 1] (a confidence component)."""

    def begin_segment(self, horizon: int) -> None:
        """A predicted segment of up to ``horizon`` steps starts now (fit, roll out, cache)."""

    def forecast(self, index: int) -> Forecast:
        """The update for step ``index`` (0-based) of the current segment."""

    def residual(self, predicted: torch.Tensor, actual: torch.Tensor) -> float:
        """Feedback after a segment: the last predicted update vs the next real one.
        Returns their cosine similarity (the trainer logs it and feeds its confidence)."""

    def memory_copies(self) -> float:
        """Parameter-sized buffers this predictor holds (for the documented memory overhead)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two flat vectors; 0 when either is zero."""
    na, nb = a.norm(), b.norm()
    if float(na) == 0.0 or float(nb) == 0.0:
        return 0.0
    return float(torch.dot(a, b) / (na * nb))


def consistency(mean_update: torch.Tensor, mean_norm: float) -> float:
    """||mean of updates|| / mean ||update||, in [0, 1].

    Why this is the agreement signal of the simple predictors: if successive updates point the
    same way the ratio is near 1 and continuing them is safe; if they are noise around zero it
    is near 0 and any extrapolation is a guess.
    """
    if mean_norm <= 0.0:
        return 0.0
    return max(0.0, min(1.0, float(mean_update.norm()) / mean_norm))
