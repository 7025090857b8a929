"""Per-parameter linear trajectory extrapolation over a window of real steps.

A least-squares line through the last W parameter values has slope
``sum_j c_j * update_j`` with weights that favour the middle of the window; we keep the W
updates (W parameter copies) and forecast the slope for every predicted step. Compared with
continuation it averages over a defined window rather than exponentially, and its agreement
is the window's consistency.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Forecast, Observation, consistency, cosine


class ExtrapolationPredictor:
    name = "extrapolation"

    def __init__(self, window: int = 8) -> None:
        if window < 2:
            raise ValueError("window must be >= 2")
        self.window = window
        self.buf: torch.Tensor | None = None   # (window, P) ring buffer of updates
        self.count = 0
        self.norms: list[float] = []
        self._slope: torch.Tensor | None = None

    def observe(self, obs: Observation) -> None:
        u = obs.update
        if self.buf is None:
            self.buf = torch.zeros((self.window, u.numel()), dtype=u.dtype, device=u.device)
        self.buf[self.count % self.window].copy_(u)
        self.count += 1
        self.norms = (self.norms + [float(u.norm())])[-self.window:]
        self._slope = None

    def ready(self) -> bool:
        return self.count >= self.window

    def _fit(self) -> torch.Tensor:
        """Slope of the LSQ line through the parameter trajectory, from the stored updates.

        With positions t=0..n (n updates, theta_t cumulative), slope = sum_j w_j u_j where
        w_j = sum_{t>=j} (t - tbar) / sum_t (t - tbar)^2 (the weights sum to 1).
        """
        assert self.buf is not None
        n = min(self.count, self.window)
        t = torch.arange(n + 1, dtype=torch.float64)
        tc = t - t.mean()
        denom = float((tc * tc).sum())
        w = torch.flip(torch.cumsum(torch.flip(tc[1:], [0]), 0), [0]) / denom  # w_j for j=1..n
        # rows of buf in chronological order
        start = self.count - n
        order = [(start + j) % self.window for j in range(n)]
        rows = self.buf[order]
        return (w.to(rows.dtype).to(rows.device) @ rows)

    def agreement(self) -> float:
        if not self.ready():
            return 0.0
        if self._slope is None:
            self._slope = self._fit()
        mean_norm = sum(self.norms) / len(self.norms)
        return consistency(self._slope, mean_norm)

    def begin_segment(self, horizon: int) -> None:
        self._slope = self._fit()

    def forecast(self, index: int) -> Forecast:
        if self._slope is None:
            self._slope = self._fit()
        return Forecast(delta=self._slope)

    def residual(self, predicted: torch.Tensor, actual: torch.Tensor) -> float:
        return cosine(predicted, actual)

    def memory_copies(self) -> float:
        return float(self.window + 1)

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "buf": self.buf, "count": self.count,
                "norms": list(self.norms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = int(state["window"])
        self.buf = state["buf"].clone() if state["buf"] is not None else None
        self.count = int(state["count"])
        self.norms = [float(x) for x in state["norms"]]
        self._slope = None
