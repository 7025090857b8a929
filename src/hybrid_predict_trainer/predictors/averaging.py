"""Averaged-trajectory prediction: jump onto the average of the recent iterates.

Why: with a mini-batch optimizer at a well-tuned (high) learning rate the iterate rattles
around the path the optimizer is really taking; the average of recent iterates lies closer to
that path and has a lower loss than the iterate itself (why Lookahead, SWA and weight EMAs
work). Measured on mnist-mlp (AdamW, lr 0.016, 200 steps, 3 seeds; see
``python -m benchmarks.predictor_probe``): the validation loss at an EMA of the weights
(decay 0.9) was 11% below the iterate's, while continuing the mean update by 5 steps *raised*
it. So the forecast of step 0 of a segment moves the weights onto the exponential average of
the iterates since the last segment; every later step follows the mean velocity (the EMA of
all real updates), which the paired checks keep only where it helps.

Only observed updates are needed (the trainer's protocol): with ``u`` the update of a real
step and ``d = average - weights``, ``d <- beta * (d - u)`` keeps the offset exact without
storing the weights. Two parameter copies (offset and mean velocity), four during a segment.
After a segment the average restarts at the weights the segment left, so ``ready()`` waits
for ``min_observations`` real updates before the next jump.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Forecast, Observation, consistency, cosine


class AveragingPredictor:
    name = "averaging"

    def __init__(self, beta: float = 0.9, min_observations: int = 10) -> None:
        if not 0.0 < beta < 1.0:
            raise ValueError("beta must be in (0, 1)")
        if min_observations < 2:
            raise ValueError("min_observations must be >= 2")
        self.beta = beta
        self.min_observations = min_observations
        self.offset: torch.Tensor | None = None    # EMA of the weights minus the weights
        self.velocity: torch.Tensor | None = None  # EMA of the updates (not bias-corrected)
        self.norm_ema = 0.0
        self.count = 0       # updates since the average (re)started
        self.total = 0       # updates observed in all
        self._jump: torch.Tensor | None = None
        self._step: torch.Tensor | None = None
        self._consistency: float | None = 0.0

    # -- observing ------------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        u = obs.update
        if self.offset is None or self.velocity is None:
            self.offset = torch.zeros_like(u)
            self.velocity = torch.zeros_like(u)
        # the average's offset: d' = beta*avg + (1-beta)*(w+u) - (w+u) = beta*(d - u)
        self.offset.sub_(u).mul_(self.beta)
        self.velocity.mul_(self.beta).add_(u, alpha=1.0 - self.beta)
        n = float(u.norm())
        self.norm_ema = n if self.total == 0 else 0.9 * self.norm_ema + 0.1 * n
        self.count += 1
        self.total += 1
        self._consistency = None

    def _mean_velocity(self) -> torch.Tensor:
        assert self.velocity is not None
        # bias correction of an EMA started at zero (the weights of the updates sum to 1)
        return self.velocity / (1.0 - self.beta ** max(self.total, 1))

    def ready(self) -> bool:
        return self.count >= self.min_observations

    def agreement(self) -> float:
        if self._consistency is None:
            if self.count < 2 or self.velocity is None:
                self._consistency = 0.0
            else:
                # ||v / c|| / n == ||v|| / (n * c): scale the scalar, not a parameter-sized copy
                bias = 1.0 - self.beta ** max(self.total, 1)
                self._consistency = consistency(self.velocity, self.norm_ema * bias)
        return self._consistency

    # -- forecasting ----------------------------------------------------------------------
    def begin_segment(self, horizon: int) -> None:
        if self.offset is None:
            raise RuntimeError("begin_segment() before any observation")
        self._jump = self.offset.clone()
        self._step = self._mean_velocity()
        # the segment moves the weights onto the average: the average restarts from there
        # (the mean velocity keeps its memory: a long average is the better direction)
        self.offset.zero_()
        self.count = 0

    def forecast(self, index: int) -> Forecast:
        if self._jump is None:
            raise RuntimeError("forecast() before begin_segment()")
        return Forecast(delta=self._jump if index == 0 else self._step)

    def residual(self, predicted: torch.Tensor, actual: torch.Tensor) -> float:
        return cosine(predicted, actual)

    def memory_copies(self) -> float:
        return 4.0 if self._jump is not None else 2.0

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "min_observations": self.min_observations, "offset": self.offset,
                "velocity": self.velocity, "norm_ema": self.norm_ema, "count": self.count,
                "total": self.total, "jump": self._jump,
                "step": self._step, "consistency": self.agreement()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def clone(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.clone()
        self.beta = float(state["beta"])
        self.min_observations = int(state["min_observations"])
        self.offset, self.velocity = clone(state["offset"]), clone(state["velocity"])
        self.norm_ema = float(state["norm_ema"])
        self.count, self.total = int(state["count"]), int(state["total"])
        self._jump, self._step = clone(state["jump"]), clone(state["step"])
        self._consistency = float(state["consistency"])
