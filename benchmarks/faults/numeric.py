"""Numeric faults injected into real training: NaN/Inf in data, loss, gradients, forecasts and
parameters; a learning-rate spike; a loss explosion.

Each fault is a small object that the training loop of :mod:`.workload` calls before and after
every step. :func:`evaluate` runs it next to a clean run of the same workload and checks the
four properties the library promises for it:

- *recovered*: no exception, finite weights at the end, and the trainer visibly acted (a
  skipped step, a rejected check, a rollback or a restore) at or after the injection;
- *named*: a ``trainer.signals`` entry at or after the injection names the source (the loss,
  the gradient's parameter, the predicted update, the parameter), and with the health monitor
  on, a ``non-finite`` finding names it too (for NaN/Inf faults);
- *quality* (NaN/Inf faults): the final validation loss is within ``tolerance`` (5%) of the
  clean run's (reported, not required, for the learning-rate spike and the loss explosion);
- *bounded loss of progress*: every rollback lands no earlier than the start of the segment
  in which the fault was injected (see :mod:`.workload` for the exact measure).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from hybrid_predict_trainer.phases import Phase
from hybrid_predict_trainer.predictors import Forecast, build_predictor

from .workload import (Fault, Run, StepContext, Workload, acted, progress_lag,
                       rollback_matches, segment_start, train)


def _in_phase(ctx: StepContext, phase: str) -> bool:
    p = ctx.trainer.phase
    return p is Phase.PREDICT if phase == "predict" else p is Phase.FULL


class _Once(Fault):
    """A fault that fires once, at the first step >= ``at`` spent in ``phase``."""

    kind = "nan"      # "nan": skip/rollback + quality within tolerance; "divergence": rollback
                      # + nothing before the current segment lost

    def __init__(self, at: int, phase: str = "full") -> None:
        super().__init__()
        self.at, self.phase = at, phase

    def due(self, ctx: StepContext) -> bool:
        return not self.injected and ctx.index >= self.at and _in_phase(ctx, self.phase)


class NanInBatch(_Once):
    source = ("loss",)
    finding_where = "loss"

    @property
    def name(self) -> str:
        return f"NaN in a data batch ({self.phase} step)"

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        if not self.due(ctx):
            return None
        self.injected.append(ctx.index)
        xb, yb = ctx.batch
        xb = xb.clone()
        xb[3, 5] = float("nan")
        return lambda: F.cross_entropy(ctx.model(xb), yb)


class NanLoss(_Once):
    source = ("loss",)
    finding_where = "loss"

    @property
    def name(self) -> str:
        return f"NaN in the loss ({self.phase} step)"

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        if not self.due(ctx):
            return None
        self.injected.append(ctx.index)
        inner = ctx.closure
        return lambda: inner() * float("nan")


class InfGradient(_Once):
    """A backward hook on the output layer's weight returns a gradient with one Inf."""

    source = ("gradient of '2.weight'",)
    finding_where = "gradient of '2.weight'"

    name = "Inf in one gradient (2.weight)"

    def __init__(self, at: int) -> None:
        super().__init__(at, "full")
        self._armed = False
        self._handle: Any = None

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        if self._handle is None:
            self._handle = ctx.model[2].weight.register_hook(self._hook)
        if self.due(ctx):
            self.injected.append(ctx.index)
            self._armed = True
        return None

    def _hook(self, grad: torch.Tensor) -> torch.Tensor:
        if not self._armed:
            return grad
        self._armed = False
        grad = grad.clone()
        grad[0, 0] = float("inf")
        return grad


class _NanForecastPredictor:
    """The configured predictor, except that one forecast carries a NaN when armed."""

    def __init__(self, inner: Any, fault: "NanInForecast") -> None:
        self._inner, self._fault = inner, fault
        self.name = getattr(inner, "name", "wrapped")

    def __getattr__(self, item: str) -> Any:
        return getattr(self._inner, item)

    def forecast(self, index: int) -> Forecast:
        fc = self._inner.forecast(index)
        if self._fault.armed:
            self._fault.armed = False
            delta = fc.delta.clone()
            delta[delta.numel() // 2] = float("nan")
            return Forecast(delta, fc.loss)
        return fc


class NanInForecast(_Once):
    """A custom predictor whose forecast contains a NaN once: the NaN is really written into a
    parameter by the predicted step."""

    source = ("predicted update",)
    finding_where = None
    name = "NaN in a predicted update (custom predictor)"

    def __init__(self, at: int, workload: Workload) -> None:
        super().__init__(at, "predict")
        self.armed = False
        self.needs_predictor = _NanForecastPredictor(build_predictor(workload.hybrid_config()),
                                                     self)

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        if self.due(ctx):
            self.injected.append(ctx.index)
            self.armed = True
        return None


class NanInParameter(_Once):
    """NaN written into a parameter between two steps (a hardware fault, or user code)."""

    source = ("'2.weight'",)
    finding_where = "2.weight"

    @property
    def name(self) -> str:
        return f"NaN written into a parameter ({self.phase} phase)"

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        if self.due(ctx):
            self.injected.append(ctx.index)
            with torch.no_grad():
                ctx.model[2].weight[0, 0] = float("nan")
        return None


class LrSpike(_Once):
    """The learning rate is multiplied by ``factor`` for ``steps`` steps (a scheduler bug)."""

    kind = "divergence"

    source = ("loss-blowup", "prediction-blowup", "segment-rollback", "exploding-gradients")
    finding_where = None

    def __init__(self, at: int, phase: str = "full", factor: float = 100.0,
                 steps: int = 3) -> None:
        super().__init__(at, phase)
        self.factor, self.steps = factor, steps
        self._saved: list[float] | None = None
        self.restored_at: int | None = None

    @property
    def name(self) -> str:
        return f"learning rate x{self.factor:g} for {self.steps} steps (from a {self.phase} step)"

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        groups = ctx.optimizer.param_groups
        if self._saved is None:
            if self.due(ctx):
                self._saved = [g["lr"] for g in groups]
                for g in groups:
                    g["lr"] *= self.factor
                self.injected.append(ctx.index)
        elif self.restored_at is None:
            if len(self.injected) < self.steps:
                self.injected.append(ctx.index)
            else:
                for g, lr in zip(groups, self._saved):
                    g["lr"] = lr
                self.restored_at = ctx.index
        return None


class LossExplosion(_Once):
    """Every weight gets a large random kick (a corrupted update): the loss explodes."""

    kind = "divergence"

    source = ("loss-blowup", "prediction-blowup", "segment-rollback", "non-finite")
    finding_where = None

    def __init__(self, at: int, phase: str = "full", scale: float = 3.0) -> None:
        super().__init__(at, phase)
        self.scale = scale

    @property
    def name(self) -> str:
        return f"loss explosion: weights kicked by {self.scale:g} std ({self.phase} phase)"

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        if self.due(ctx):
            self.injected.append(ctx.index)
            g = torch.Generator().manual_seed(1234)
            with torch.no_grad():
                for p in ctx.model.parameters():
                    p.add_(torch.randn(p.shape, generator=g) * self.scale * float(p.std()))
        return None


def default_faults(workload: Workload, at_full: int = 24, at_predict: int = 35) -> list[Fault]:
    """One instance of every numeric fault: those of real steps at the first Full step at or
    after ``at_full``, those of predicted steps at the first predicted step at or after
    ``at_predict``."""
    f, p = at_full, at_predict
    return [
        NanInBatch(f, "full"), NanInBatch(p, "predict"), NanLoss(f, "full"),
        InfGradient(f), NanInForecast(p, workload), NanInParameter(p, "predict"),
        NanInParameter(f, "full"), LrSpike(f, "full"), LrSpike(p, "predict"),
        LossExplosion(f, "full", 10.0), LossExplosion(p, "predict", 10.0),
    ]


def evaluate(fault: Fault, workload: Workload, clean: Run, tolerance: float = 0.05,
             **train_kw: Any) -> dict[str, Any]:
    """Inject ``fault`` and check recovery, naming, quality and the rollback bound."""
    run = train(workload, fault, **train_kw)
    steps = list(fault.injected)
    rec: dict[str, Any] = {"fault": fault.name, "injected": bool(steps),
                           "injected_at": steps[0] if steps else None,
                           "error": run.error, "phases": run.phases()}
    if not steps:
        rec.update(survived=False, reason="the fault never fired")
        return rec
    start = steps[0]
    tr = run.trainer
    acted_at = [i for i, r in enumerate(run.results) if i >= start and acted(r)]
    signals = [(s, str(sig)) for s, sig in tr.signals if s >= start]
    named = any(any(src in text for src in fault.source) for _, text in signals)
    findings = [(f.code, f.where) for f in tr.monitor.findings] if tr.monitor else []
    finding_ok = (fault.finding_where is None or tr.monitor is None or any(
        code == "non-finite" and fault.finding_where in where for code, where in findings))
    finite = bool(tr.flat.all_finite())
    ratio = run.final_val / clean.final_val if run.val else math.inf
    matches = rollback_matches(clean, run, start)
    seg0 = segment_start(clean, start)
    lost = max((t - s for t, s in matches), default=0)
    floor = min((s for _, s in matches), default=None)
    within_segment = floor is None or floor >= seg0 - 1
    last = max(steps)
    t_eval = min(len(run.val) - 1, last + 10)
    lag = progress_lag(clean, run, t_eval) if run.error is None else None
    rec.update(
        lag_steps=lag, lag_at=t_eval,
        recovered=run.error is None and finite and bool(acted_at),
        first_action_at=acted_at[0] if acted_at else None,
        signal_names_source=named, finding_names_source=finding_ok,
        signals=signals[:6], findings=findings,
        final_val=run.final_val, clean_val=clean.final_val, val_ratio=ratio,
        quality_ok=ratio <= 1.0 + tolerance,
        steps_lost=lost, segment_start=seg0, restore_floor=floor,
        lost_within_segment=within_segment,
        fault_steps=fault.duration)
    rec["kind"] = getattr(fault, "kind", "nan")
    rec["survived"] = bool(rec["recovered"] and named and finding_ok and within_segment
                           and (rec["quality_ok"] or rec["kind"] == "divergence"))
    return rec


def campaign(workload: Workload | None = None,
             positions: tuple[tuple[int, int], ...] = ((24, 35),),
             tolerance: float = 0.05) -> list[dict[str, Any]]:
    """Every numeric fault at each ``(at_full, at_predict)`` position."""
    wl = workload or Workload()
    clean = train(wl)
    out = []
    for at_full, at_predict in positions:
        for fault in default_faults(wl, at_full, at_predict):
            out.append(evaluate(fault, wl, clean, tolerance))
    return out
