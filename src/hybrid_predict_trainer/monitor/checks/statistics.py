"""User statistics and gates: ``stale-statistic`` (case A) and ``unreachable-threshold`` (case B).

Why: a statistic that never moves while the loss does is almost always one nobody updates (an
EMA stuck at 0 kept a whole phase switched off for twenty experiments), and a gate whose score
never comes near its threshold is a switch that can never flip. Both are invisible in the loss
curve, so the monitor reads them directly. Reads cost whatever the user's functions cost;
gates fed through ``gate_observe`` cost a few dictionary updates.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigError
from ..util import fmt, median, to_float
from .base import Check, StepContext


@dataclass
class _Tracked:
    name: str
    fn: Callable[[], Any]
    expect_moving: bool
    values: deque = field(default_factory=deque)
    losses: deque = field(default_factory=deque)
    first_step: deque = field(default_factory=deque)


@dataclass
class _Gate:
    name: str
    fn: Callable[[], Any] | None
    threshold: float
    weights: dict[str, float] | None
    evals: int = 0
    opened: bool = False
    best: float = -math.inf
    best_step: int = 0
    best_parts: dict[str, float] = field(default_factory=dict)
    peak_parts: dict[str, float] = field(default_factory=dict)


class StatisticsCheck(Check):
    """Holds the statistics registered with ``track`` and the gates of ``gate``."""

    name = "statistics"
    codes = ("stale-statistic", "unreachable-threshold")
    every = "track_every"

    def __init__(self) -> None:
        super().__init__()
        self._tracked: dict[str, _Tracked] = {}
        self._gates: dict[str, _Gate] = {}

    def active(self) -> bool:
        return bool(self._tracked) or any(g.fn is not None for g in self._gates.values())

    # ------------------------------------------------------------------ registration
    def track(self, name: str, fn: Callable[[], Any], *, expect_moving: bool = True) -> None:
        if not callable(fn):
            raise ConfigError(f"track: fn for '{name}' must be callable, got "
                              f"{type(fn).__name__}")
        self._tracked[name] = _Tracked(name, fn, expect_moving)

    def gate(self, name: str, fn: Callable[[], Any] | None, threshold: float, *,
             weights: Mapping[str, float] | None = None) -> None:
        if fn is not None and not callable(fn):
            raise ConfigError(f"gate: score_fn for '{name}' must be callable or None")
        if not math.isfinite(float(threshold)):
            raise ConfigError(f"gate: threshold for '{name}' must be a finite number")
        self._gates[name] = _Gate(name, fn, float(threshold),
                                  dict(weights) if weights is not None else None)

    def observe(self, name: str, score: float, components: Mapping[str, float] | None, *,
                threshold: float | None = None,
                weights: Mapping[str, float] | None = None) -> None:
        gate = self._gates.get(name)
        if gate is None:
            if threshold is None:
                raise ConfigError(f"gate_observe: gate '{name}' is not registered; call "
                                  f"monitor.gate('{name}', None, threshold) first or pass "
                                  "threshold=")
            self.gate(name, None, threshold, weights=weights)
            gate = self._gates[name]
        else:
            if threshold is not None:
                gate.threshold = float(threshold)
            if weights is not None:
                gate.weights = dict(weights)
        self._evaluate(gate, float(score), dict(components or {}))

    # ------------------------------------------------------------------ events
    def on_step(self, ctx: StepContext) -> None:
        with self.timed():
            for tracked in self._tracked.values():
                self._read(tracked, ctx)
            for gate in self._gates.values():
                if gate.fn is not None:
                    result = gate.fn()
                    score, parts = (result if isinstance(result, tuple) else (result, {}))
                    self._evaluate(gate, to_float(score),
                                   {k: to_float(v) for k, v in dict(parts).items()})

    def _read(self, tr: _Tracked, ctx: StepContext) -> None:
        cfg = self.monitor.config
        value = to_float(tr.fn())
        if not math.isfinite(value):
            self.monitor.emit(
                "non-finite", f"statistic '{tr.name}'", observed=f"'{tr.name}' = {fmt(value)}",
                expected="a finite value",
                message=f"the tracked statistic '{tr.name}' became {fmt(value)}.",
                suggestion=f"find the first NaN/Inf that feeds '{tr.name}' (a division by "
                           "zero or a log of 0 is the usual cause).")
            return
        if not tr.expect_moving or not math.isfinite(ctx.loss_value):
            return
        tr.values.append(value)
        tr.losses.append(ctx.loss_value)
        tr.first_step.append(ctx.step)
        while len(tr.values) > cfg.stale_window:
            tr.values.popleft()
            tr.losses.popleft()
            tr.first_step.popleft()
        if len(tr.values) < cfg.stale_window:
            return
        lo, hi = min(tr.values), max(tr.values)
        if hi - lo > 1e-12 + 1e-9 * abs(hi):
            return
        llo, lhi = min(tr.losses), max(tr.losses)
        moved = (lhi - llo) / max(abs(median(tr.losses)), 1e-12)
        if moved <= cfg.stale_loss_change:
            return
        self.monitor.emit(
            "stale-statistic", f"statistic '{tr.name}'",
            observed=f"'{tr.name}' = {fmt(hi)} in all {len(tr.values)} reads (steps "
                     f"{tr.first_step[0]}-{ctx.step}) while the loss ranged "
                     f"{fmt(llo)}-{fmt(lhi)} ({100 * moved:.0f}% of its median)",
            expected="a statistic that moves when the loss moves",
            message=f"the tracked statistic '{tr.name}' never changed while the loss did; "
                    "it is probably never updated, and anything that reads it is deciding on "
                    "a constant.",
            suggestion=f"check that the code meant to update '{tr.name}' runs every step; "
                       f"pass expect_moving=False to track() if it may stay constant.")

    def _evaluate(self, gate: _Gate, score: float, parts: dict[str, float]) -> None:
        cfg = self.monitor.config
        gate.evals += 1
        if score >= gate.threshold:
            gate.opened = True
        if score > gate.best:
            gate.best, gate.best_step, gate.best_parts = score, self.monitor.current_step, parts
        for k, v in parts.items():
            gate.peak_parts[k] = max(gate.peak_parts.get(k, -math.inf), v)
        reach = gate.threshold - cfg.gate_reach * abs(gate.threshold)
        if gate.opened or gate.evals < cfg.unreachable_after or gate.best >= reach:
            return
        short = gate.threshold - gate.best
        parts_txt = ", ".join(f"{k} {fmt(v)}" for k, v in gate.best_parts.items())
        observed = (f"best score {fmt(gate.best)} (step {gate.best_step}) in {gate.evals} "
                    f"evaluations, {fmt(short)} below the threshold {fmt(gate.threshold)}"
                    + (f"; contributions at best: {parts_txt}" if parts_txt else ""))
        blame, detail = _holding_back(gate)
        message = (f"gate '{gate.name}' never came within reach of its threshold, so what it "
                   f"guards never ran.{detail}")
        suggestion = (f"lower the threshold to what the components can reach (best seen "
                      f"{fmt(gate.best)})" + (f", or find why '{blame}' stays low" if blame
                                              else "") + ".")
        self.monitor.emit(
            "unreachable-threshold", f"gate '{gate.name}'", observed=observed,
            expected=f"a score within {100 * cfg.gate_reach:.0f}% of {fmt(gate.threshold)} "
                     f"(>= {fmt(reach)}) at least once",
            message=message, suggestion=suggestion)

    def not_run(self) -> list[str]:
        return [f"gate '{g.name}': never evaluated" for g in self._gates.values()
                if g.evals == 0]


def _holding_back(gate: _Gate) -> tuple[str | None, str]:
    """Which component kept the score low, and a sentence saying so."""
    peaks = gate.peak_parts
    if not peaks:
        return None, ""
    if gate.weights:
        gaps = {k: w - peaks.get(k, 0.0) for k, w in gate.weights.items()}
        peaks = {k: peaks.get(k, 0.0) for k in gaps}
        blame = max(gaps, key=gaps.get)
        w = gate.weights[blame]
        value = f" (value {fmt(peaks.get(blame, 0.0) / w)} of 1)" if w > 0 else ""
        return blame, (f" '{blame}' held it back most: it contributed at most "
                       f"{fmt(peaks.get(blame, 0.0))} of a possible {fmt(w)}{value}; even "
                       f"at its maximum the best score would be "
                       f"{fmt(gate.best + w - gate.best_parts.get(blame, peaks[blame]))}.")
    blame = min(peaks, key=peaks.get)
    return blame, (f" '{blame}' contributed least (at most {fmt(peaks[blame])}); pass "
                   "weights= to gate() to compare each component with its maximum.")
