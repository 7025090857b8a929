"""Divergence signals and the recovery each one calls for.

Levels, mildest first, each with its action in the trainer:
- SHORTEN: end the current predicted segment now (prediction error, failed check);
- FULL: leave prediction and run real steps for a while (loss z-score, gradient norm outside
  its warm-up band, oscillation);
- ROLLBACK: restore the last good parameter snapshot (a loss blow-up: z-score above sigma *and*
  a large relative rise, e.g. after a learning-rate spike);
- RESTORE: reload the last saved checkpoint, or the snapshot if none (non-finite parameters,
  or several non-finite steps in a row).
A non-finite loss or gradient on a real step never reaches the weights: that step's backward
or optimizer step is skipped before any signal is acted on.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from .ema import LossTracker


class Level(IntEnum):
    OK = 0
    SHORTEN = 1
    FULL = 2
    ROLLBACK = 3
    RESTORE = 4


@dataclass(frozen=True)
class Signal:
    name: str
    level: Level
    observed: float
    expected: float
    message: str

    def __str__(self) -> str:
        return f"{self.name} ({self.level.name.lower()}): {self.message}"


@dataclass
class DivergenceMonitor:
    sigma: float = 4.0
    explode: float = 10.0
    vanish: float = 0.01
    # A real step's batch loss against the EMA is unpaired: at a high learning rate a noisy
    # batch reaches ~2x (measured on fashion-cnn at lr 8e-3), a real divergence far more.
    blowup_ratio: float = 3.0
    # A predicted step's check is paired (same batch before/after), so 1.5x is already clear.
    paired_blowup_ratio: float = 1.5
    # Vanishing gradients are only a fault while the loss is still high: a model that fits
    # its training data has tiny gradients *because* its loss is tiny (MNIST MLP after ~30
    # epochs: gradient norm 0.1% of warm-up, at a training loss near 0).
    vanish_loss_fraction: float = 0.1
    warmup_norms: list[float] = field(default_factory=list)
    warmup_losses: list[float] = field(default_factory=list)
    baseline: float | None = None
    loss_baseline: float | None = None
    nonfinite_streak: int = 0
    fast_history: list[float] = field(default_factory=list)
    _calls: int = 0

    def record_warmup(self, grad_norm: float, loss: float | None = None) -> None:
        if math.isfinite(grad_norm):
            self.warmup_norms.append(grad_norm)
        if loss is not None and math.isfinite(loss):
            self.warmup_losses.append(loss)

    def freeze_baseline(self) -> None:
        if self.warmup_norms and self.baseline is None:
            self.baseline = statistics.median(self.warmup_norms)
        if self.warmup_losses and self.loss_baseline is None:
            self.loss_baseline = statistics.median(self.warmup_losses)

    def _converged(self, tracker: LossTracker) -> bool:
        """The loss fell below ``vanish_loss_fraction`` of its warm-up median (positive losses
        only: for a loss that can be negative there is no such scale)."""
        lb = self.loss_baseline
        return (lb is not None and lb > 0 and tracker.count > 0
                and tracker.fast < self.vanish_loss_fraction * lb)

    def nonfinite(self, what: str) -> Signal:
        self.nonfinite_streak += 1
        level = Level.RESTORE if self.nonfinite_streak >= 3 else Level.FULL
        return Signal("non-finite", level, float("nan"), 0.0,
                      f"{what} is NaN/Inf; the step was skipped so the weights stay finite"
                      + (f" ({self.nonfinite_streak} in a row: restoring)" if level == Level.RESTORE
                         else ""))

    def real_step(self, loss: float, grad_norm: float | None,
                  tracker: LossTracker) -> list[Signal]:
        """Signals from a finite real step. ``tracker`` holds the EMAs *before* this loss;
        ``grad_norm`` None: not taken on this step (no gradient signal)."""
        self.nonfinite_streak = 0
        out: list[Signal] = []
        z = tracker.zscore(loss)
        if tracker.count >= 10 and z > self.sigma:
            blowup = self.blowup(loss, tracker)
            if blowup is not None:
                out.append(blowup)
            else:
                out.append(Signal("loss-deviation", Level.FULL, loss, tracker.fast,
                                  f"loss {loss:.4g} is {z:.1f} sigma above its EMA "
                                  f"{tracker.fast:.4g} (limit {self.sigma})"))
        if self.baseline and grad_norm is not None:
            if grad_norm > self.explode * self.baseline:
                out.append(Signal("exploding-gradients", Level.FULL, grad_norm, self.baseline,
                                  f"gradient norm {grad_norm:.3g} > {self.explode:g}x the warm-up "
                                  f"median {self.baseline:.3g}"))
            elif grad_norm < self.vanish * self.baseline and not self._converged(tracker):
                out.append(Signal("vanishing-gradients", Level.FULL, grad_norm, self.baseline,
                                  f"gradient norm {grad_norm:.3g} < {self.vanish:g}x the warm-up "
                                  f"median {self.baseline:.3g} while the loss is still above "
                                  f"{self.vanish_loss_fraction:g}x its warm-up level"))
        self.fast_history.append(tracker.fast)
        if len(self.fast_history) > 24:
            del self.fast_history[0]
        self._calls += 1
        if self._calls % 8 == 0:  # a 24-step pattern: checking every 8th step loses nothing
            osc = self._oscillation()
            if osc is not None:
                out.append(osc)
        return out

    def blowup(self, loss: float, tracker: LossTracker) -> Signal | None:
        """The loss far above its EMA: > ``sigma`` standard deviations *and* > ``blowup_ratio``
        times the EMA. The one definition of a blow-up; the trainer also asks it before the
        optimizer step so exploded gradients never reach the optimizer's moments."""
        if tracker.count < 10:
            return None
        z = tracker.zscore(loss)
        if z > self.sigma and loss > self.blowup_ratio * tracker.fast:
            return Signal("loss-blowup", Level.ROLLBACK, loss, tracker.fast,
                          f"loss {loss:.4g} is {z:.1f} sigma and {loss / tracker.fast:.1f}x "
                          f"above its EMA {tracker.fast:.4g}")
        return None

    def _oscillation(self) -> Signal | None:
        """The smoothed loss changing direction most of the time with a large amplitude."""
        h = self.fast_history
        if len(h) < 24:
            return None
        d = [b - a for a, b in zip(h, h[1:])]
        flips = sum(1 for a, b in zip(d, d[1:]) if a * b < 0)
        amp = (max(h) - min(h)) / max(abs(statistics.fmean(h)), 1e-12)
        if flips >= 16 and amp > 0.2:
            self.fast_history = []
            return Signal("loss-oscillation", Level.FULL, float(flips), 8.0,
                          f"the loss EMA changed direction {flips} times in 24 steps with a "
                          f"{100 * amp:.0f}% swing")
        return None

    def check(self, before: float, after: float, predicted: float | None) -> list[Signal]:
        """Signals from one verified predicted step (same-batch losses before/after)."""
        out: list[Signal] = []
        if not math.isfinite(after):
            out.append(Signal("non-finite", Level.ROLLBACK, after, before,
                              "the loss after a predicted update is NaN/Inf; rolling back"))
        elif after > self.paired_blowup_ratio * before:
            out.append(Signal("prediction-blowup", Level.SHORTEN, after, before,
                              f"a predicted update raised the same-batch loss from {before:.4g} "
                              f"to {after:.4g}"))
        if predicted is not None and math.isfinite(after) and after > 0:
            err = abs(predicted - after) / after
            if err > 0.5:
                out.append(Signal("prediction-error", Level.SHORTEN, predicted, after,
                                  f"predicted loss {predicted:.4g} vs verified {after:.4g} "
                                  f"({100 * err:.0f}% off)"))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"warmup_norms": list(self.warmup_norms), "baseline": self.baseline,
                "nonfinite_streak": self.nonfinite_streak, "fast_history": list(self.fast_history),
                "calls": self._calls, "warmup_losses": list(self.warmup_losses),
                "loss_baseline": self.loss_baseline}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup_norms = [float(x) for x in state["warmup_norms"]]
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.nonfinite_streak = int(state["nonfinite_streak"])
        self.fast_history = [float(x) for x in state["fast_history"]]
        self._calls = int(state.get("calls", 0))
        # checkpoints written before the loss baseline existed: no convergence exemption
        self.warmup_losses = [float(x) for x in state.get("warmup_losses", [])]
        lb = state.get("loss_baseline")
        self.loss_baseline = None if lb is None else float(lb)
