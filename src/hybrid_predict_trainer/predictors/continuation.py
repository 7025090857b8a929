"""Optimizer continuation: keep doing what the optimizer has been doing.

The forecast for every step of a segment is an exponential average of the recent real
updates (``beta=0`` replays the last update exactly). It uses the optimizer as a black box,
so it works for SGD, momentum SGD, Adam and AdamW alike, costs one parameter copy, and no
fitting. Averaging matters on noisy mini-batch problems: a single update is dominated by its
batch's noise, the average by the direction the optimizer keeps returning to.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Forecast, Observation, consistency, cosine


class ContinuationPredictor:
    name = "continuation"

    def __init__(self, beta: float = 0.5, min_observations: int = 2) -> None:
        if not 0.0 <= beta < 1.0:
            raise ValueError("beta must be in [0, 1)")
        self.beta = beta
        self.min_observations = min_observations
        self.ema: torch.Tensor | None = None
        self.norm_ema = 0.0
        self.count = 0
        self._consistency: float | None = 0.0

    def observe(self, obs: Observation) -> None:
        u = obs.update
        if self.ema is None:
            self.ema = u.detach().clone()
            self.norm_ema = float(u.norm())
        else:
            self.ema.mul_(self.beta).add_(u, alpha=1.0 - self.beta)
            self.norm_ema = 0.9 * self.norm_ema + 0.1 * float(u.norm())
        self.count += 1
        self._consistency = None  # computed on demand: the gate asks far less often

    def ready(self) -> bool:
        return self.count >= self.min_observations

    def agreement(self) -> float:
        if self._consistency is None:
            self._consistency = (consistency(self.ema, self.norm_ema)
                                 if self.count > 1 and self.ema is not None else 0.0)
        return self._consistency

    def begin_segment(self, horizon: int) -> None:
        pass

    def forecast(self, index: int) -> Forecast:
        if self.ema is None:
            raise RuntimeError("forecast() before any observation")
        return Forecast(delta=self.ema)

    def residual(self, predicted: torch.Tensor, actual: torch.Tensor) -> float:
        return cosine(predicted, actual)

    def memory_copies(self) -> float:
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "ema": self.ema, "norm_ema": self.norm_ema,
                "count": self.count, "consistency": self.agreement()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])
        self.ema = state["ema"].clone() if state["ema"] is not None else None
        self.norm_ema = float(state["norm_ema"])
        self.count = int(state["count"])
        self._consistency = float(state["consistency"])
