"""``loss-term-dominates``: one term of a multi-term loss swamps the others (case F).

Why both conditions: a large term is harmless while the small ones still improve, and small
terms that already reached their floor are done, not starved. The finding needs one term above
``dominance_share`` of the total over a window of reads, and the sum of the other terms flat
(less than 5% better in the second half of the window than in the first) yet still above 10%
of where it started.
"""
from __future__ import annotations

from collections import deque

from ..util import floats, fmt, median
from .base import Check, StepContext

_IMPROVED = 0.05
_CONVERGED = 0.1


class TermDominanceCheck(Check):
    """Reads the ``components`` passed to ``step()`` every ``components_every`` steps."""

    name = "loss-terms"
    codes = ("loss-term-dominates",)
    every = "components_every"

    def __init__(self) -> None:
        super().__init__()
        self._samples: deque[dict[str, float]] = deque()
        self._first: dict[str, float] | None = None

    def on_step(self, ctx: StepContext) -> None:
        if not ctx.components:
            return
        cfg = self.monitor.config
        with self.timed():
            names = list(ctx.components)
            sample = dict(zip(names, (abs(v) for v in floats(ctx.components.values()))))
            if self._first is None:
                self._first = sample
            self._samples.append(sample)
            while len(self._samples) > cfg.dominance_window:
                self._samples.popleft()
            if len(self._samples) == cfg.dominance_window:
                self._evaluate(names)

    def _evaluate(self, names: list[str]) -> None:
        cfg = self.monitor.config
        if len(names) < 2:
            return
        samples = list(self._samples)
        shares = {n: median(s.get(n, 0.0) / max(sum(s.values()), 1e-30) for s in samples)
                  for n in names}
        top = max(shares, key=shares.get)
        if shares[top] <= cfg.dominance_share:
            return
        others = [sum(v for k, v in s.items() if k != top) for s in samples]
        half = len(others) // 2
        before, after = median(others[:half]), median(others[half:])
        start = sum(v for k, v in self._first.items() if k != top)
        if after < before * (1 - _IMPROVED) or after < _CONVERGED * start:
            return
        last = samples[-1]
        parts = ", ".join(f"{n} {fmt(last.get(n, 0.0))}" for n in names)
        self.monitor.emit(
            "loss-term-dominates", f"loss term '{top}'",
            observed=f"'{top}' is {100 * shares[top]:.1f}% of the total (median of "
                     f"{len(samples)} reads; last: {parts}); the other terms went "
                     f"{fmt(before)} -> {fmt(after)}",
            expected=f"no term above {100 * cfg.dominance_share:.0f}% while the others "
                     "stop improving",
            message=f"the loss term '{top}' holds most of the total loss and the other terms "
                    "have stopped improving: their gradients are swamped by this one term.",
            suggestion=f"rescale '{top}' (normalise its target or lower its weight) so the "
                       "other terms get gradient again.")
