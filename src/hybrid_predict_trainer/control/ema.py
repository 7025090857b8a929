"""Loss statistics the trainer decides from: fast/slow EMAs and the EMA of squared deviation.

Why in one small object that is updated in exactly one place: failure case A was a loss EMA
that no code path ever updated, so a phase was never entered. ``update`` is called on every
finite real-step loss, and the health monitor tracks ``fast`` to prove it moves.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class LossTracker:
    fast_rate: float = 0.1
    slow_rate: float = 0.02
    fast: float = 0.0
    slow: float = 0.0
    var: float = 0.0
    count: int = 0

    def update(self, loss: float) -> None:
        if not math.isfinite(loss):
            return
        if self.count == 0:
            self.fast = self.slow = loss
        else:
            dev = loss - self.fast
            self.var = (1 - self.fast_rate) * (self.var + self.fast_rate * dev * dev)
            self.fast += self.fast_rate * dev
            self.slow += self.slow_rate * (loss - self.slow)
        self.count += 1

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def zscore(self, loss: float) -> float:
        """How many standard deviations ``loss`` sits above the fast EMA."""
        if self.count < 2:
            return 0.0
        return (loss - self.fast) / max(self.std, 1e-8 * max(abs(self.fast), 1.0))

    def stability(self) -> float:
        """1 when the loss is not drifting up; falls to 0 as the fast EMA rises 10% above the
        slow one. A *falling* loss is stable: that is when prediction pays most."""
        if self.count < 2 or self.slow == 0.0:
            return 0.0 if self.count < 2 else 1.0
        rise = max(0.0, (self.fast - self.slow) / abs(self.slow))
        return max(0.0, 1.0 - rise / 0.1)

    def state_dict(self) -> dict[str, float]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, float]) -> None:
        for k, v in state.items():
            setattr(self, k, type(getattr(self, k))(v))
