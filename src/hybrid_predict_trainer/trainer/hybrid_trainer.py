"""``HybridTrainer``: real steps, predicted steps that really move the weights, verification,
rollback, and an explanation for every phase change.

One call of :meth:`HybridTrainer.step` is one training step on the user's batch:

- **Warmup / Full / Correct** (real steps): the closure runs with autograd, the trainer runs
  backward and ``optimizer.step()``, and records the update the optimizer really made.
- **Predict**: the predictor's forecast is added to the parameters in place; no backward, no
  optimizer step. Every ``check_every`` steps a *paired* check evaluates the current batch
  at the last accepted point (the anchor) and after the new updates, under ``no_grad`` and with
  the same RNG state (same dropout masks). If the loss fell, the window is accepted and becomes
  the new anchor; if not, the parameters return to the anchor and the segment ends (best-prefix
  acceptance: only the failing window is lost).

Optimizer state after predicted steps: predicted steps never touch it. Adam's moments and step
count describe the real gradients only, so bias correction stays exact, and a rollback to the
segment snapshot is exact (no optimizer step happened since the snapshot was taken).
"""
from __future__ import annotations

import copy
import math
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..config import HybridConfig
from ..control import ConfidenceGate, DivergenceMonitor, LinUCB, LossTracker
from ..control.divergence import Level, Signal
from ..distributed import Collective, LocalCollective
from ..errors import CheckpointError, ConfigError, LossError, TrainerStateError
from ..metrics import JsonlWriter, MetricsHook, RunStats, StepResult
from ..params import FlatParams, dense_values
from ..phases import Phase, Transition
from ..predictors import Observation, Predictor, build_predictor
from ..predictors.slow_weights import SlowWeights
from .closure import Closure, call_closure, checked_loss
from .inputs import (check_optimizer, check_params_unchanged, owned_params, trainable_ids,
                     warn_inert)
from .jumps import JumpSteps
from .progress import ProgressMeter
from .rng import RngState, capture_rng, restore_rng
from .segments import PredictedSegments
from .state import TrainerState


class HybridTrainer(JumpSteps, PredictedSegments, TrainerState):
    """Wraps a model and its optimizer; call :meth:`step` once per batch.

    Args:
        model: the ``nn.Module`` being trained (a DDP wrapper is fine).
        optimizer: SGD, Adam or AdamW are tested. Any other ``torch.optim.Optimizer`` whose
            ``step()`` takes no closure works too, because predictors only see the parameter
            updates it makes (a one-time ``HybridWarning`` says it is untested). LBFGS-style
            optimizers that re-evaluate a closure are refused.
        config: a :class:`HybridConfig`; defaults are documented there.
        predictor: an object satisfying :class:`~hybrid_predict_trainer.predictors.Predictor`
            to use instead of the built-in one ``config.predictor`` names.
        collective: how decisions are agreed across processes (DDP); single process by default.
        hooks: callables receiving every :class:`StepResult` (forward metrics to any logger).
        backward: runs the backward pass of a real step instead of ``loss.backward()`` (e.g.
            ``LightningModule.manual_backward`` for mixed precision and strategies).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 config: HybridConfig | None = None, *, predictor: Predictor | None = None,
                 collective: Collective | None = None,
                 hooks: Sequence[MetricsHook] = (),
                 backward: Callable[[torch.Tensor], None] | None = None) -> None:
        if config is None:
            config = HybridConfig()
        elif isinstance(config, dict):
            config = HybridConfig.from_dict(config)
        elif not isinstance(config, HybridConfig):
            raise ConfigError(f"config: expected HybridConfig or dict, got {type(config).__name__}")
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"optimizer: expected a torch.optim.Optimizer, got "
                              f"{type(optimizer).__name__}")
        self.model, self.optimizer, self.config = model, optimizer, config
        check_optimizer(optimizer)
        warn_inert(config, own_predictor=predictor is not None)
        self.flat = FlatParams(owned_params(model, optimizer))
        self._owned_ids = trainable_ids(optimizer)
        self.names = {id(p): n for n, p in model.named_parameters()}
        self.predictor: Predictor = predictor if predictor is not None else build_predictor(config)
        self.collective: Collective = collective or LocalCollective()
        self._single = isinstance(self.collective, LocalCollective)   # nothing to agree on
        # an optimizer that overrides zero_grad gets its own; the others, the plain loop
        self._own_zero_grad = type(optimizer).zero_grad is not torch.optim.Optimizer.zero_grad
        self.gate = ConfidenceGate(config.confidence_threshold, dict(config.confidence_weights),
                                   config.unreachable_after)
        self.bandit = LinUCB(sorted(set(config.horizons)), alpha=config.bandit_alpha)
        self.divergence = DivergenceMonitor(config.divergence_sigma, config.grad_explode_factor,
                                            config.grad_vanish_factor)
        self.tracker = LossTracker(config.ema_fast, config.ema_slow)
        self.stats = RunStats()
        self.transitions: list[Transition] = []
        self.signals: list[tuple[int, Signal]] = []
        self.hooks: list[MetricsHook] = list(hooks)
        self._backward = backward
        self._rolled_now = False                  # a rollback/restore happened this step
        self._event_now: str | None = None         # a decision this step that is no phase change
        self._writer = JsonlWriter(config.metrics_path) if config.metrics_path else None
        if self._writer is not None:
            self.hooks.append(self._writer)

        self.phase = Phase.WARMUP
        self._phase_steps = 0
        self._fatal: str | None = None
        self._closed = False
        # check forwards must not move running statistics (BatchNorm): only models that have
        # buffers pay for keeping them
        self._has_buffers = any(True for _ in model.buffers())
        # Only predicted segments read the real updates, so these three parameter copies are
        # allocated by the first step that records one (never with segments=False).
        self._prev: torch.Tensor | None = None   # parameters before the last real step
        self._cur: torch.Tensor | None = None    # parameters after it (next step's "before")
        self._cur_valid = False                  # False once anything else moved the weights
        self._cur_versions: list[int] = []
        self._update: torch.Tensor | None = None  # the last real update
        self._has_update = False
        self._snapshot: torch.Tensor | None = None
        # the model's buffers (BatchNorm statistics) at the snapshot, restored with it
        self._snapshot_buffers: list[torch.Tensor] | None = None
        self._anchor: torch.Tensor | None = None
        self._scratch: torch.Tensor | None = None
        # segment state
        self._seg: dict[str, Any] = {}
        self._correct_pending = False
        self._last_delta: torch.Tensor | None = None
        self._accuracy = 0.5                      # EMA of verified-check outcomes (prior 0.5)
        self._gate_report = None
        self._gate_warned = False
        self._auto_off_until: int | None = None
        self._auto_off_reason: str | None = None
        self._segments_window: deque[tuple[float, float]] = deque(
            maxlen=2 * config.auto_off_min_segments)  # (progress, cost) per segment
        self._progress = ProgressMeter()           # eta: real steps timed and probed
        self._last_was_real = False
        self._work_s = 0.0
        self._last_checkpoint: Path | None = None
        self._residuals: list[float] = []
        self.jumps = SlowWeights(config.jump_every, config.jump_alpha,
                                 alpha_step=config.jump_alpha_step,
                                 calm_alpha=config.calm_pull(),
                                 calm_tolerance=config.jump_grace_tolerance,
                                 ) if config.jump_every else None
        self._slow_late = config.slow_start_late()   # else the slow weights start at step 1
        self._jumps_off_until: int | None = None
        self._jumps_off_reason: str | None = None   # why jumps are paused, while they are
        self._jump_pending = False                # weights sit on the slow weights, unchecked
        # the last real step's loss: with full_batch, the next paired jump check's 'before'
        self._step_loss: float | None = None
        self.monitor = self._attach_monitor() if config.monitor else None

    # ------------------------------------------------------------------ construction helpers
    def _attach_monitor(self) -> Any:
        try:
            from ..monitor import watch
        except ImportError:  # pragma: no cover - monitor is part of the package
            return None
        mon = watch(self.model, self.optimizer, policy=self.config.monitor_policy)
        mon.track("loss_ema_fast", lambda: self.tracker.fast)
        return mon

    # ------------------------------------------------------------------ public API
    def step(self, closure: Closure) -> StepResult:
        """Run one training step. See the module docstring for what each phase does."""
        if self._closed:
            raise TrainerStateError("step: the trainer was closed (close(), or the end of its "
                                    "with-block); build a new HybridTrainer and load a "
                                    "checkpoint into it to train on")
        if self._fatal is not None:
            raise TrainerStateError(f"step: the trainer stopped after a fatal error ({self._fatal})"
                                    "; load a checkpoint with trainer.load(path) to continue")
        if not callable(closure):
            raise LossError(f"step: expected a closure returning the loss, got "
                            f"{type(closure).__name__}; write trainer.step(lambda: loss_fn(model(x), y))")
        check_params_unchanged(self._owned_ids, self.optimizer)
        t0 = time.perf_counter()
        self._work_s = 0.0
        self._rolled_now = False
        self._event_now = None
        phase = self.phase
        try:
            if phase is Phase.PREDICT:
                res = self._predicted_step(closure)
            else:
                res = self._real_step(closure)
        except TrainerStateError as exc:
            self._fatal = str(exc)
            raise
        elapsed = time.perf_counter() - t0
        self._last_was_real = res.backward and not res.predicted
        self.stats.steps += 1
        self.stats.time_per_phase[phase.value] += elapsed
        self.stats.steps_per_phase[phase.value] += 1
        self.stats.overhead_s += max(0.0, elapsed - self._work_s)
        if not res.predicted and res.backward:
            self._progress.real_step_time(elapsed)
        if phase is Phase.PREDICT:
            self._seg["cost_s"] = self._seg.get("cost_s", 0.0) + elapsed
        object.__setattr__(res, "wall_s", elapsed)   # frozen for the user; stamped once here
        if self._event_now is not None:
            object.__setattr__(res, "event", self._event_now)
        for hook in self.hooks:
            hook(res)
        return res

    def add_hook(self, hook: MetricsHook) -> None:
        """Receive every StepResult (e.g. to forward metrics to your logger)."""
        self.hooks.append(hook)

    @property
    def should_stop(self) -> bool:
        """True when the health monitor (policy="stop") asked to end training."""
        return bool(getattr(self.monitor, "should_stop", False))

    def summary(self) -> dict[str, Any]:
        """Counts, times and reasons for the run so far (what the demo and CLI print)."""
        s = self.stats.summary()
        s.update({
            "phase": self.phase.value,
            "predictor": getattr(self.predictor, "name", type(self.predictor).__name__),
            "memory_param_copies": self.memory_copies(),
            "eta": self.eta(),
            "accuracy": self._accuracy,
            "bandit_pulls": {str(a): int(n) for a, n in zip(self.bandit.arms, self.bandit.pulls)},
            "auto_off": self._auto_off_reason,
            "never_predicted_reason": self.never_predicted_reason(),
            "transitions": len(self.transitions),
            "mean_residual_cosine": (sum(self._residuals) / len(self._residuals)
                                     if self._residuals else None),
            "jumps": (None if self.jumps is None else
                      {**self.jumps.summary(), "paused": self._jumps_off_reason}),
        })
        if self.monitor is not None and hasattr(self.monitor, "summary"):
            s["health"] = self.monitor.summary()
        return s

    def never_predicted_reason(self) -> str | None:
        """Why Predict was never entered, in plain words (None if it was)."""
        if self.stats.predicted_steps:
            return None
        cfg = self.config
        if not cfg.segments:   # first: with segments off, the run's length is not the reason
            return ("predicted segments are off (segments=False): every step is a real one"
                    + ("; the predicted updates are the checked jumps onto the slow weights"
                       if self.jumps is not None else ""))
        if self.stats.steps < cfg.warmup_steps + cfg.full_steps:
            return (f"the run ended after {self.stats.steps} steps, before warmup_steps + "
                    f"full_steps = {cfg.warmup_steps + cfg.full_steps} real steps were done")
        if self._auto_off_reason:
            return self._auto_off_reason
        if not self.predictor.ready():
            return f"the predictor '{self.predictor.name}' never had enough observations"
        unreachable = self.gate.unreachable()
        if unreachable:
            return unreachable
        return (f"the confidence gate never opened: best score {self.gate.best_score:.3f} vs "
                f"threshold {self.gate.threshold:.2f} over {self.gate.evaluations} checks")

    def eta(self) -> float:
        """Measured progress of an accepted predicted step relative to a real step.

        Both are paired relative loss drops on batches the steps never saw: a real step's is
        probed every 10 real steps (one extra forward), a segment's on the first batch after
        it (one extra forward per segment). 1.0 until 3 real probes exist.
        """
        return self._progress.eta()

    def memory_copies(self) -> float:
        """Parameter-sized buffers held by the trainer and its predictor."""
        own = sum(b is not None for b in (self._prev, self._cur, self._update, self._snapshot,
                                          self._anchor, self._scratch))
        slow = self.jumps.memory_copies() if self.jumps is not None else 0.0
        # a predictor fills its buffers from the real updates it observes, and only steps
        # that hold the update buffers record one (never with segments off)
        pred = float(self.predictor.memory_copies()) if self._update is not None else 0.0
        return own + slow + pred

    def close(self) -> None:
        """Flush logs and detach the monitor's hooks. Idempotent; the trainer takes no step
        after it."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.write({"type": "summary", **self.summary()})
            self._writer.close()
        if self.monitor is not None and hasattr(self.monitor, "close"):
            self.monitor.close()

    def __enter__(self) -> "HybridTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ closure handling
    def _call(self, closure: Closure, grad: bool) -> tuple[torch.Tensor, dict[str, Any]]:
        t = time.perf_counter()
        out = call_closure(closure, self.flat.params, self.optimizer, grad)
        self._work_s += time.perf_counter() - t   # the closure is the user's work, not ours
        return checked_loss(out, self.flat.params, self.optimizer, grad)

    def _agreed(self, value: float) -> float:
        """One decision statistic averaged over the ranks (itself in a single process)."""
        return value if self._single else self.collective.mean([value])[0]

    def _clear_grads(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)`` without its profiler scope and compiler
        guard, which cost many times the loop itself on a small model; an optimizer that
        overrides ``zero_grad`` gets its own."""
        if self._own_zero_grad:
            self.optimizer.zero_grad(set_to_none=True)
            return
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                p.grad = None

    def _forward_value(self, closure: Closure) -> tuple[float, torch.Tensor, dict[str, Any]]:
        loss, comps = self._call(closure, grad=False)
        return float(loss), loss, comps

    # ------------------------------------------------------------------ real steps
    def _real_step(self, closure: Closure, micro: bool = False) -> StepResult:
        phase = Phase.CORRECT if micro else self.phase
        seg_before = probe_before = None
        jump: tuple[float | None, Any, float | None] | None = None
        if self.jumps is not None and self.jumps.slow is None and not self._slow_late:
            self._start_slow()     # Lookahead's slow weights start at the start
        if self._jump_pending and not micro:
            jump = self._jump_check_before(closure)
        elif self._correct_pending and not micro:
            if self.config.full_batch and self._seg.get("snapshot_loss") is not None:
                seg_before = self._seg["snapshot_loss"]   # same batch: measured at segment start
            else:
                seg_before = self._loss_at(self._snapshot, closure)  # fresh batch at snapshot
        elif self._probe_due() and not micro:
            probe_before = self._loss_at(self._prev, closure)     # fresh batch before last step
            self._progress.probe_started()
        lean = self._lean()
        if not lean:
            self._ensure_update_buffers()
            if self._cur_valid and self._versions() == self._cur_versions:
                # the weights are exactly where the last real step left them (no in-place
                # change since, by us or by user code: autograd's version counters would move)
                self._prev, self._cur = self._cur, self._prev
            else:
                self.flat.read_into(self._prev)
        self._cur_valid = False
        kept = self._buffers_save()   # a redone graded forward starts from these statistics
        try:
            loss_t, comps = self._call(closure, grad=True)
        except BaseException:
            if jump is not None:   # the user's closure raised: put the weights back on the
                if jump[2] is not None:     # jump, unchecked; the next step checks it
                    self.flat.write_from(self.jumps.slow)  # type: ignore[union-attr]
                self._jump_pending = True
            raise
        loss = self._agreed(loss_t.item())
        jumped: bool | None = None
        jump_rise: float | None = None
        if jump is not None:
            before, rng, at_jump = jump
            # at_jump None: this forward ran at the jumped weights, the usual order; else it
            # ran at the weights the jump left, and the check's forward scored the jump
            pair = (before, loss) if at_jump is None else (loss, at_jump)
            jumped = self._judge_jump(*pair)
            if pair[0] is not None and pair[0] > 0 and math.isfinite(pair[1]):
                jump_rise = pair[1] / pair[0] - 1.0   # the paired check's number, for the user
                self.jumps.note_change(jump_rise)  # type: ignore[union-attr]
            if jumped != (at_jump is None):   # the graded forward ran at the wrong weights
                land = self.jumps.slow if jumped else self._scratch
                self.flat.write_from(land)  # type: ignore[arg-type]
                if not lean:
                    self._prev.copy_(land)  # type: ignore[arg-type]
                self._rng_set(rng)   # same dropout masks as the check
                self._buffers_load(kept)
                loss_t, comps = self._call(closure, grad=True)
                loss = self._agreed(loss_t.item())
        rolled_back = False
        verdict: str | None = None
        if seg_before is not None:
            verdict = self._segment_verdict(seg_before, loss)
            if verdict is not None:
                self._rollback_to_snapshot()
                rolled_back = True
                if not lean:
                    self.flat.read_into(self._prev)
                loss_t, comps = self._call(closure, grad=True)
                loss = self._agreed(loss_t.item())
        early: Transition | None = None
        if not rolled_back and not micro and self._snapshot is not None and math.isfinite(loss):
            blowup = (self.divergence.blowup(loss, self.tracker)
                      if self.divergence.baseline is not None else None)
            if blowup is not None:
                # The weights that produced this loss are bad: never step from them (their
                # gradients would also pollute the optimizer's moments). Restore the snapshot
                # and take this batch's step from there.
                self._note(blowup)
                self._rollback_to_snapshot()
                self.stats.rollbacks += 1
                rolled_back = True
                early = self._move(Phase.FULL, f"rolled back to the last snapshot: {blowup}",
                                   {"observed": blowup.observed, "expected": blowup.expected},
                                   force=True)
                if not lean:
                    self.flat.read_into(self._prev)
                loss_t, comps = self._call(closure, grad=True)
                loss = self._agreed(loss_t.item())
        if probe_before is not None and not rolled_back:
            self._progress.record_probe(probe_before, loss)
        if not math.isfinite(loss):
            self._buffers_load(kept)   # a NaN batch must not poison the running statistics
            return self._skip_nonfinite(phase, "loss", loss, rolled_back)
        t = time.perf_counter()
        if self._backward is not None:
            self._backward(loss_t)
        else:
            loss_t.backward()
        self._work_s += time.perf_counter() - t
        self.stats.backward_passes += 1
        # identical on every DDP rank once gradients are all-reduced; reduced anyway so that
        # the skip/divergence decisions stay collective under no_sync or other schemes
        gn = self._grad_norm_or_none(phase, lean)
        if not (math.isfinite(gn) if gn is not None else self._grads_finite()):
            self._buffers_load(kept)
            return self._skip_nonfinite(phase, self._first_nonfinite_grad(), loss, rolled_back)
        if jumped is not None and self.jumps is not None and self.jumps.alpha_step > 0.0:
            # a kept jump's step took its gradient at the jumped weights (the slow weights)
            self.jumps.adapt(self._agreed(self.flat.grad_dot(
                self._scratch, self.jumps.slow)) if jumped else None)  # type: ignore[arg-type]
        t = time.perf_counter()
        self.optimizer.step()
        self._clear_grads()   # part of a plain loop's work too
        self._work_s += time.perf_counter() - t
        if self.jumps is not None:
            self.jumps.tick()
        self._step_loss = loss
        residual = None
        if lean:
            self._has_update = False
        else:
            self.flat.read_into(self._cur)
            torch.sub(self._cur, self._prev, out=self._update)
            self._cur_valid = True
            self._cur_versions = self._versions()
            self._has_update = True
            self._progress.real_step_recorded()
            if self._correct_pending and not micro:
                residual = self._finish_segment(seg_before, loss, verdict)
            assert gn is not None   # taken on every step that is not lean
            self.predictor.observe(Observation(self._update, loss, gn, self._lr()))
        signals = self.divergence.real_step(loss, gn, self.tracker) if (
            self.divergence.baseline is not None) else []
        self.tracker.update(loss)
        if phase is Phase.WARMUP and gn is not None:
            self.divergence.record_warmup(gn, loss)
        comp_vals = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in comps.items()}
        if self.monitor is not None:
            # undetached: the monitor walks the (already used) graph to spot carried state
            self.monitor.step(loss_t, components=comps or None)
        transition = None
        if not micro:
            self._phase_steps += 1
            transition = self._after_real_step(signals) or early
            if self._jump_due():
                self._jump()
        if residual is not None:
            comp_vals["residual_cosine"] = residual
        if jump_rise is not None:
            comp_vals["jump_rise"] = jump_rise
        conf = self._gate_report.score if self._gate_report is not None else None
        return StepResult(self.stats.steps, phase, loss, predicted=False, backward=True,
                          confidence=conf, jumped=jumped,
                          rolled_back=rolled_back or self._rolled_now,
                          transition=str(transition) if transition else None,
                          components=comp_vals)

    # ------------------------------------------------------------------ after a real step
    def _skip_nonfinite(self, phase: Phase, what: str, loss: float,
                        rolled_back: bool) -> StepResult:
        """A NaN/Inf loss or gradient never reaches the weights: drop the step."""
        self._step_loss = None
        self.optimizer.zero_grad(set_to_none=True)
        self.stats.skipped_nonfinite += 1
        bad = None if what != "loss" or self.flat.all_finite() else (
            self.flat.first_nonfinite(self.names))
        if bad is not None:
            sig = Signal("non-finite", Level.RESTORE, float("nan"), 0.0,
                         f"parameter '{bad}' is NaN/Inf (changed outside the trainer's steps), "
                         "so the loss is too; the step was skipped and the last good weights "
                         "are restored")
        else:
            sig = self.divergence.nonfinite(what)
        self._note(sig)
        if self.monitor is not None:
            if what.startswith("gradient") and hasattr(self.monitor, "emit"):
                self.monitor.emit(
                    "non-finite", what, observed=f"NaN/Inf at step {self.stats.steps + 1}",
                    expected="finite gradients",
                    message=f"the {what} contains NaN or Inf; the trainer skipped the step, so "
                            "the weights stay finite",
                    suggestion="guard the operation that produces it (sqrt or norm at 0, log "
                               "of 0, division by a zero std) or lower the learning rate")
            self.monitor.step(torch.tensor(loss), backward=False)
        transition = self._act_on([sig])
        self._phase_steps += 1
        return StepResult(self.stats.steps, phase, loss, predicted=False, backward=False,
                          rolled_back=rolled_back or self._rolled_now,
                          transition=str(transition) if transition else None)

    def _grad_norm_or_none(self, phase: Phase, lean: bool) -> float | None:
        """The gradient norm where something reads it on this step, else None (then
        :meth:`_grads_finite` checks the gradients). The predictor observes it on every step
        that is not lean; otherwise only the warm-up's baseline (a median) and the
        exploding/vanishing signals read it, from every ``grad_norm_every``-th real step (the
        first one included, and until the warm-up has one)."""
        every = self.config.grad_norm_every
        if (not lean or every == 1 or (self.stats.backward_passes - 1) % every == 0
                or (phase is Phase.WARMUP and not self.divergence.warmup_norms)):
            return self._agreed(float(self.flat.grad_norm()))
        return None

    def _grads_finite(self) -> bool:
        """Every gradient finite, on every rank (one fused pass where it applies)."""
        ok = self.flat.grads_finite()
        if ok is None:
            ok = math.isfinite(float(self.flat.grad_norm()))
        return ok if self._single else self._agreed(0.0 if ok else 1.0) == 0.0

    def _first_nonfinite_grad(self) -> str:
        for p in self.flat.params:
            if p.grad is not None and not torch.isfinite(dense_values(p.grad)).all():
                return f"gradient of '{self.names.get(id(p), '?')}'"
        return "gradient"

    def _after_real_step(self, signals: list[Signal]) -> Transition | None:
        cfg = self.config
        for s in signals:
            self._note(s)
        acted = self._act_on(signals)
        if acted is not None:
            return acted
        if self.phase is Phase.WARMUP:
            if self._phase_steps >= cfg.warmup_steps:
                self.divergence.freeze_baseline()
                moved = self._move(Phase.FULL, "warm-up done: gradient-norm baseline set",
                                   {"grad_norm_median": self.divergence.baseline or 0.0})
                # after the move: the first restore point is taken once, here, not again by
                # _move's finiteness-checked copy (on a small model that check and the second
                # copy cost about a quarter of a step)
                self._ensure_buffers()
                return moved
            return None
        if self.phase is Phase.CORRECT and self._phase_steps < cfg.correct_steps:
            return None
        if self.phase is Phase.FULL and self._phase_steps % 50 == 0:
            self._take_snapshot()  # keep a recent known-good restore point
        if self.phase is Phase.FULL and self._phase_steps < cfg.full_steps:
            return None
        return self._maybe_predict()

    # ------------------------------------------------------------------ buffers
    def _ensure_update_buffers(self) -> None:
        """Before/after copies and the real update: what predictors observe (segments only)."""
        if self._prev is None:
            self._prev, self._cur, self._update = (self.flat.new_buffer() for _ in range(3))

    def _ensure_buffers(self, anchor: bool = False) -> None:
        """The restore point (from the end of warm-up on) and, for segments, their anchor."""
        if self._snapshot is None:
            self._snapshot = self.flat.new_buffer()
            self._take_snapshot()
        if anchor and self._anchor is None:
            self._anchor = self.flat.new_buffer()

    # ------------------------------------------------------------------ eta probes
    def _probe_due(self) -> bool:
        """Probe a real step's progress every 10 real steps, only right after a real step."""
        return (self.config.auto_off and self._has_update and self._last_was_real
                and self.phase is not Phase.WARMUP and self._progress.probe_ready())

    def _loss_at(self, weights: torch.Tensor | None, closure: Closure,
                 back: torch.Tensor | None = None) -> float:
        """This batch's loss at other weights (one no-grad forward; ``weights`` None: where
        they are). It runs *before* the graded forward, so autograd never sees the swap, and
        the RNG is restored so the graded forward gets the same dropout masks: the two losses
        form a clean pair. ``back`` is where the weights go afterwards (default: where they
        are now, kept in the scratch)."""
        if back is None:
            if self._scratch is None:
                self._scratch = self.flat.new_buffer()
            self.flat.read_into(self._scratch)
            back = self._scratch
        rng = self._rng_get()
        kept = self._buffers_save()
        if weights is not None:
            self.flat.write_from(weights)
        try:
            value, _, _ = self._forward_value(closure)
        finally:  # a closure that raises must not leave the model at the probe's weights
            self.flat.write_from(back)
            self._rng_set(rng)
            self._buffers_load(kept)
        self.stats.forward_checks += 1
        return self._agreed(value)

    # ------------------------------------------------------------------ recovery actions
    def _act_on(self, signals: list[Signal]) -> Transition | None:
        if not signals:
            return None
        worst = max(signals, key=lambda s: s.level)
        if worst.level >= Level.RESTORE:
            return self._restore(worst)
        if worst.level >= Level.ROLLBACK and self._snapshot is not None:
            self._rollback_to_snapshot()
            self.stats.rollbacks += 1
            return self._move(Phase.FULL, f"rolled back to the last snapshot: {worst}",
                              {"observed": worst.observed, "expected": worst.expected},
                              force=True)
        if worst.level >= Level.FULL and self.phase is not Phase.WARMUP:
            return self._move(Phase.FULL, f"back to real steps: {worst}",
                              {"observed": worst.observed, "expected": worst.expected},
                              force=True)
        return None

    def _restore(self, sig: Signal) -> Transition:
        if self._last_checkpoint is not None and self._last_checkpoint.is_file():
            # the weights and the optimizer go back; the run's record does not: its counters,
            # transitions and signals stay monotone (step numbers never repeat)
            record = copy.deepcopy(self.stats.state_dict())
            transitions, signals = self.transitions, self.signals
            self.load(self._last_checkpoint)
            self.stats.load_state_dict(record)
            self.transitions, self.signals = transitions, signals
            self._rolled_now = True
            how = f"restored checkpoint '{self._last_checkpoint}'"
        elif self._snapshot is not None:
            self._rollback_to_snapshot()
            how = "restored the last parameter snapshot"
        else:
            how = "no snapshot or checkpoint to restore yet"
        self.stats.rollbacks += 1
        self.divergence.nonfinite_streak = 0
        if not self.flat.all_finite():
            bad = self.flat.first_nonfinite(self.names)
            self._fatal = f"parameter '{bad}' is NaN/Inf and nothing finite could be restored"
            raise TrainerStateError(f"step: {self._fatal}; save checkpoints with trainer.save() "
                                    "so a restore point exists")
        return self._move(Phase.FULL, f"{how}: {sig}", {"observed": sig.observed}, force=True)

    def _take_snapshot(self) -> None:
        assert self._snapshot is not None
        self.flat.read_into(self._snapshot)
        self._snapshot_buffers = self._buffers_save()

    def _rollback_to_snapshot(self) -> None:
        """Back to the snapshot: the weights, and the BatchNorm statistics of that moment,
        which the rolled-back steps' forwards had moved towards the bad weights."""
        assert self._snapshot is not None
        self._cur_valid = False
        self._rolled_now = True
        self.flat.write_from(self._snapshot)
        self._buffers_load(self._snapshot_buffers)
        self.optimizer.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ small helpers
    def _move(self, dst: Phase, reason: str, numbers: dict[str, float],
              force: bool = False) -> Transition:
        if dst is Phase.FULL and self.phase is Phase.PREDICT:
            # leaving a segment abruptly: verdict pending is dropped, parameters are at anchor
            self._correct_pending = False
        t = Transition(self.stats.steps, self.phase, dst, reason,
                       {k: float(v) for k, v in numbers.items()})
        self.transitions.append(t)
        self.phase = dst
        self._phase_steps = 0
        if (dst is Phase.FULL and self._snapshot is not None and self.tracker.count
                and self.flat.all_finite()):
            # Full is a fresh start: keep a known-good restore point for loss blow-ups (never
            # from NaN/Inf weights: the snapshot is what a restore falls back on)
            self._take_snapshot()
        return t

    def _note(self, sig: Signal) -> None:
        self.signals.append((self.stats.steps, sig))
        if len(self.signals) > 1000:
            del self.signals[:500]

    def _context(self, report: Any) -> np.ndarray:
        c = report.components
        return np.array([1.0, report.score, c["accuracy"], c["agreement"]])

    def _buffers_save(self) -> list[torch.Tensor] | None:
        """The model's buffers (BatchNorm running statistics), kept before a forward that
        must leave no trace: a check, or a graded forward that may be redone."""
        if not self._has_buffers:
            return None
        return [b.detach().clone() for b in self.model.buffers()]

    @torch.no_grad()
    def _buffers_load(self, saved: list[torch.Tensor] | None) -> None:
        if saved is not None:
            for b, v in zip(self.model.buffers(), saved):
                b.copy_(v)

    def _checked_buffers(self, saved: Any) -> list[torch.Tensor] | None:
        """Snapshot statistics from a checkpoint, shape-checked now so that a mismatch
        is refused at load time, not at the first rollback. Never None while a snapshot
        exists and the model has buffers, so a rollback always restores them."""
        if not self._has_buffers or self._snapshot is None:
            return None
        if saved is None:   # an older file: the statistics it saved with the model
            return self._buffers_save()
        own = list(self.model.buffers())
        if len(saved) != len(own) or any(
                tuple(a.shape) != tuple(b.shape) for a, b in zip(saved, own)):
            raise CheckpointError("checkpoint: its snapshot's buffers do not fit this model's "
                                  "buffers; build the same architecture before loading")
        return [b.detach().clone().to(o.dtype) for b, o in zip(saved, own)]

    def _versions(self) -> list[int]:
        return [p._version for p in self.flat.params]

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0].get("lr", 0.0))

    def _rng_get(self) -> RngState:
        return capture_rng(self.flat.device)

    def _rng_set(self, state: RngState) -> None:
        restore_rng(state, self.flat.device)

