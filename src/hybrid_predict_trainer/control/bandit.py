"""LinUCB over horizon arms: each segment's length is chosen from its measured payoff.

Reward (in real-step equivalents) = steps saved by accepted predictions - time spent on
rejected ones - penalty x relative loss damage after the segment. Context: a bias, the
confidence score, and the accuracy and agreement components. Plain numpy: 4 arms x 4 features
is far too small to deserve a tensor library.
"""
from __future__ import annotations

from typing import Any

import numpy as np


class LinUCB:
    def __init__(self, arms: list[int], dim: int = 4, alpha: float = 0.5, ridge: float = 1.0):
        self.arms = list(arms)
        self.alpha = alpha
        self.A = np.stack([np.eye(dim) * ridge for _ in self.arms])
        self.b = np.zeros((len(self.arms), dim))
        self.pulls = np.zeros(len(self.arms), dtype=np.int64)
        self.last_ucb: list[float] = []

    def select(self, context: np.ndarray) -> int:
        """Index of the arm to pull. Ties (e.g. before any reward) go to the longest horizon:
        best-prefix acceptance makes an over-long horizon cost only the failing check."""
        x = np.asarray(context, dtype=np.float64)
        ucb = []
        for a in range(len(self.arms)):
            a_inv = np.linalg.inv(self.A[a])
            theta = a_inv @ self.b[a]
            ucb.append(float(theta @ x + self.alpha * np.sqrt(x @ a_inv @ x)))
        self.last_ucb = ucb
        best = max(ucb)
        return max(i for i, u in enumerate(ucb) if u >= best - 1e-12)

    def update(self, arm: int, context: np.ndarray, reward: float) -> None:
        x = np.asarray(context, dtype=np.float64)
        self.A[arm] += np.outer(x, x)
        self.b[arm] += reward * x
        self.pulls[arm] += 1

    def state_dict(self) -> dict[str, Any]:
        import torch
        return {"arms": list(self.arms), "A": torch.from_numpy(self.A.copy()),
                "b": torch.from_numpy(self.b.copy()), "pulls": torch.from_numpy(self.pulls.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if [int(a) for a in state["arms"]] != self.arms:
            raise ValueError(f"bandit arms {list(state['arms'])} differ from configured {self.arms}")
        self.A = state["A"].numpy().copy()
        self.b = state["b"].numpy().copy()
        self.pulls = state["pulls"].numpy().copy()
