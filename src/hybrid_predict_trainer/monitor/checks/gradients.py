"""``vanishing-gradients`` and ``exploding-gradients``, per parameter, against a warm-up baseline.

Why per parameter: a global norm hides one layer that stopped learning behind the others. Each
parameter's baseline is the median of its gradient norm over the first ``warmup_steps``
updates; after that, norms are read every ``grad_every`` updates (one foreach norm and one
sync) and must stay below ``vanish_factor`` x baseline for ``grad_patience`` reads, or above
``explode_factor`` x baseline for ``explode_patience`` reads.

Gradients often grow tenfold from their tiny values at initialisation while a model learns
(recurrent weights, a GAN generator, a fresh head), so an explosion is only reported while the
whole gradient also grew by sqrt(``explode_factor``) and the loss (median of the last 10
steps) is 50% above the best it has been. A vanished gradient is only reported while the loss
is still above half its warm-up median and no longer falling: gradients of a run that converges
are small for a good reason. Only weight matrices and kernels (2+ dimensions) can vanish: a
bias or norm scale has a near-zero gradient whenever it sits at its optimum (e.g. an output
bias at the base rate). Parameters whose baseline is numerical noise (below 1e-6 of the
largest) are skipped.
"""
from __future__ import annotations

import math
from itertools import islice

from ..util import fmt, median
from .base import Check, GradSample

_NOISE = 1e-6
_RISE = 0.5


class GradientScaleCheck(Check):
    """Compares each parameter's gradient norm with its warm-up median."""

    name = "gradients"
    codes = ("vanishing-gradients", "exploding-gradients")

    def __init__(self) -> None:
        super().__init__()
        self._warm: dict[str, list[float]] = {}
        self._base: dict[str, float] = {}
        self._floor: dict[int, float] = {}
        self._warm_total: dict[int, list[float]] = {}
        self._base_total: dict[int, float] = {}
        self._best_loss = math.inf
        self._weights: set[str] = set()
        self._low: dict[str, int] = {}
        self._high: dict[str, int] = {}

    def on_grads(self, sample: GradSample) -> None:
        if sample.warmup:
            self._weights.update(n for n, p in zip(sample.names, sample.params) if p.dim() >= 2)
            for name, n in zip(sample.names, sample.norms):
                if math.isfinite(n):
                    self._warm.setdefault(name, []).append(n)
            self._warm_total.setdefault(sample.group, []).append(self._total(sample.norms))
            return
        with self.timed():
            self._compare(sample)

    @staticmethod
    def _total(norms: list[float]) -> float:
        return math.sqrt(sum(n * n for n in norms if math.isfinite(n)))

    def _compare(self, sample: GradSample) -> None:
        cfg = self.monitor.config
        if sample.group not in self._floor:
            for name in sample.names:
                if name in self._warm and name not in self._base:
                    self._base[name] = median(self._warm.pop(name))
            finite = [b for b in self._base.values() if math.isfinite(b)]
            self._floor[sample.group] = _NOISE * max(finite, default=0.0)
            self._base_total[sample.group] = median(self._warm_total.pop(sample.group, []))
        floor = self._floor[sample.group]
        base_total = self._base_total[sample.group]
        total_ratio = self._total(sample.norms) / base_total if base_total > 0 else 0.0
        low, high = [], []
        for name, n in zip(sample.names, sample.norms):
            base = self._base.get(name)
            if base is None or not math.isfinite(base) or base <= floor or not math.isfinite(n):
                continue
            ratio = n / base
            vanished = ratio < cfg.vanish_factor and name in self._weights
            self._low[name] = self._low.get(name, 0) + 1 if vanished else 0
            self._high[name] = self._high.get(name, 0) + 1 if ratio > cfg.explode_factor else 0
            if self._low[name] >= cfg.grad_patience:
                low.append((name, n, base))
            if self._high[name] >= cfg.explode_patience and n > floor:
                high.append((name, n, base))
        # Gradients often grow tenfold from their tiny values at initialisation while the model
        # learns (recurrent weights, a GAN generator, a fresh head). Growth is only an explosion
        # while the whole gradient grew too and the loss got worse.
        recent = median(islice(reversed(self.monitor.loss_history), 10))
        if math.isfinite(recent):
            self._best_loss = min(self._best_loss, recent)
        rising = math.isfinite(recent) and recent > self._best_loss + _RISE * abs(self._best_loss)
        if high and total_ratio > math.sqrt(cfg.explode_factor) and rising:
            self._emit_high(high, total_ratio, recent)
        if low and not self._loss_converging():
            self._emit_low(low)

    def _loss_converging(self) -> bool:
        """The loss fell by half since warm-up, or still falls (last 10 vs the 10 before)."""
        m = self.monitor
        hist = list(m.loss_history)
        start, now = median(m.warmup_losses), median(hist[-10:])
        before = median(hist[-20:-10])
        if not (math.isfinite(start) and math.isfinite(now)):
            return False
        improving = math.isfinite(before) and now < before - 0.05 * abs(before)
        return start - now > 0.5 * abs(start) or improving

    def _emit_high(self, items: list[tuple[str, float, float]], total_ratio: float,
                   loss: float) -> None:
        name, n, base = items[0]
        more = f" (and {len(items) - 1} more tensors)" if len(items) > 1 else ""
        cfg = self.monitor.config
        self.monitor.emit(
            "exploding-gradients", f"parameter '{name}'",
            observed=f"gradient norm {fmt(n)} = {fmt(n / base)}x its warm-up median "
                     f"{fmt(base)}{more}, in {self._high[name]} consecutive reads; the whole "
                     f"gradient is {fmt(total_ratio)}x its warm-up median and the loss rose "
                     f"from {fmt(self._best_loss)} to {fmt(loss)}",
            expected=f"at most {fmt(cfg.explode_factor)}x the warm-up median",
            message=f"the gradient of '{name}' grew far beyond its size during warm-up; "
                    "updates of this size usually end in a NaN loss or a diverged run.",
            suggestion="lower the learning rate or clip gradients "
                       "(torch.nn.utils.clip_grad_norm_), and check for a loss term whose "
                       "scale keeps growing.")

    def _emit_low(self, items: list[tuple[str, float, float]]) -> None:
        name, n, base = items[0]
        more = f" (and {len(items) - 1} more tensors)" if len(items) > 1 else ""
        cfg = self.monitor.config
        self.monitor.emit(
            "vanishing-gradients", f"parameter '{name}'",
            observed=f"gradient norm {fmt(n)} = {fmt(n / base)}x its warm-up median "
                     f"{fmt(base)}{more}, in {self._low[name]} consecutive reads; loss "
                     f"{fmt(median(list(self.monitor.loss_history)[-20:]))} vs "
                     f"{fmt(median(self.monitor.warmup_losses))} in warm-up",
            expected=f"at least {fmt(cfg.vanish_factor)}x the warm-up median while the loss "
                     "is still high",
            message=f"the gradient of '{name}' has all but vanished although the loss has "
                    "not come down: this layer has stopped learning.",
            suggestion="look for saturated or dead activations (sigmoid/tanh saturation, dead "
                       "ReLUs after a too-high learning rate); lower the learning rate or add "
                       "normalisation or residual connections.")
