"""Predicted segments: the gate that opens one, the predicted steps, and their verdict.

Part of :class:`~hybrid_predict_trainer.trainer.HybridTrainer` (a mixin over the trainer's
state, set up in its ``__init__``). Predicted steps apply the predictor's update to the
weights, skip backward and the optimizer, are checked by paired forwards, and a segment
that made the loss worse is rolled back to its snapshot.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import Any

import torch

from ..control.divergence import Level, Signal
from ..errors import HybridWarning
from ..metrics import StepResult
from ..phases import Phase, Transition
from ..predictors import Forecast
from .closure import Closure


class PredictedSegments:
    """Steps without a backward pass: entered through the confidence gate, checked,
    accepted or rolled back, and stopped by auto-off where they do not pay."""

    _LEAN_MARGIN = 64


    def _maybe_predict(self) -> Transition | None:
        """Gate evaluation after Full (or Correct): enter Predict, or stay on real steps."""
        cfg = self.config
        if not cfg.segments:
            return None
        if self._auto_off_until is not None:
            if cfg.auto_off_reprobe == 0 or self.stats.steps < self._auto_off_until:
                return self._move(Phase.FULL, "auto-off", {}) if self.phase is not Phase.FULL \
                    else None
            self._auto_off_until = None
            self._segments_window.clear()
        if not self.predictor.ready():
            return self._move(Phase.FULL, "predictor not ready", {}) \
                if self.phase is not Phase.FULL else None
        report = self._evaluate_gate()
        if report.is_open:
            return self._begin_segment(report)
        if self.phase is not Phase.FULL:
            return self._move(Phase.FULL, "confidence below threshold",
                              {"confidence": report.score, "threshold": report.threshold,
                               **report.components})
        return None

    def _evaluate_gate(self) -> Any:
        comps = {"agreement": self.predictor.agreement(), "accuracy": self._accuracy,
                 "stability": self.tracker.stability()}
        comps = dict(zip(comps, self.collective.mean(list(comps.values()))))
        report = self.gate.evaluate(comps)
        self._gate_report = report
        if self.monitor is not None and hasattr(self.monitor, "gate_observe"):
            self.monitor.gate_observe("predict-confidence", report.score, report.contributions,
                                      threshold=report.threshold,
                                      weights=dict(self.config.confidence_weights))
        if not self._gate_warned:
            msg = self.gate.unreachable()
            if msg is not None:
                self._gate_warned = True
                if self.monitor is None:
                    warnings.warn(msg, HybridWarning, stacklevel=4)
        return report

    def _begin_segment(self, report: Any) -> Transition:
        cfg = self.config
        ctx = self._context(report)
        arm = self.bandit.select(ctx) if cfg.bandit else len(self.bandit.arms) - 1
        horizon = self.bandit.arms[arm] if cfg.bandit else cfg.max_horizon
        self._ensure_buffers(anchor=True)
        self._take_snapshot()
        self._anchor.copy_(self._snapshot)  # type: ignore[union-attr]
        self.predictor.begin_segment(horizon)
        self._seg = {"i": 0, "anchor_i": 0, "horizon": horizon, "arm": arm, "ctx": ctx,
                     "accepted": 0, "rejected": 0, "lr": self._lr(), "cost_s": 0.0, "end": None}
        self.stats.segments += 1
        return self._move(Phase.PREDICT, f"confidence {report.score:.3f} >= threshold "
                          f"{report.threshold:.2f}; predicting up to {horizon} steps",
                          {"confidence": report.score, "horizon": float(horizon),
                           **report.components})

    def _predicted_step(self, closure: Closure) -> StepResult:
        cfg, seg = self.config, self._seg
        i, horizon = seg["i"], seg["horizon"]
        # micro-correction: a real step, only at a verified point (never on top of an
        # unverified window, which would then become the anchor without a check)
        if (cfg.correction_interval and i > 0 and i == seg["anchor_i"]
                and i % cfg.correction_interval == 0 and seg.get("micro_at") != i):
            seg["micro_at"] = i
            res = self._real_step(closure, micro=True)
            self.flat.read_into(self._anchor)   # a real step is trusted: new anchor
            seg["anchor_i"] = i
            return res
        fc: Forecast = self.predictor.forecast(i)
        lr_now = self._lr()
        scale = lr_now / seg["lr"] if seg["lr"] > 0 else 1.0
        is_check = (i + 1 - seg["anchor_i"]) % cfg.check_every == 0 or i + 1 == horizon
        loss_val: float | None = None
        accepted: bool | None = None
        transition: Transition | None = None
        if is_check:
            at_anchor = seg["anchor_i"] == i
            rng = self._rng_get()
            kept = self._buffers_save()   # the check's forwards leave the statistics alone
            if not at_anchor:
                if self._scratch is None:
                    self._scratch = self.flat.new_buffer()
                self.flat.read_into(self._scratch)
                self.flat.write_from(self._anchor)
            try:
                if at_anchor and cfg.full_batch and seg.get("anchor_loss") is not None:
                    before = seg["anchor_loss"]   # same batch: the anchor's loss is known
                else:
                    before, _, _ = self._forward_value(closure)
                    self.stats.forward_checks += 1
                    if i == 0:
                        seg["snapshot_loss"] = before
                if not at_anchor:
                    self.flat.write_from(self._scratch)
                self._apply(fc.delta, scale)
                self._rng_set(rng)
                after, after_t, comps = self._forward_value(closure)
            except BaseException:
                # the user's closure raised: put the weights back where this step found them
                self.flat.write_from(self._anchor if at_anchor else self._scratch)
                self._rng_set(rng)
                self._buffers_load(kept)
                raise
            self._buffers_load(kept)
            before, after = self.collective.mean([before, after])
            self.stats.forward_checks += 1
            loss_val = after
            window = i + 1 - seg["anchor_i"]
            signals = self.divergence.check(before, after, fc.loss)
            if not math.isfinite(after):
                signals = [self._nonfinite_source(s, before, fc.delta) if s.name == "non-finite"
                           else s for s in signals]
            for s in signals:
                self._note(s)
            if self.monitor is not None:
                self.monitor.step(after_t, components=comps or None, backward=False)
            accepted = (math.isfinite(after) and math.isfinite(before)
                        and after < before * (1.0 - cfg.accept_margin)
                        and not any(s.level >= Level.ROLLBACK for s in signals))
            self._accuracy += 0.1 * (float(accepted) - self._accuracy)
            if accepted:
                self.flat.read_into(self._anchor)
                seg["anchor_i"] = i + 1
                seg["anchor_loss"] = after
                seg["accepted"] += window
                self.stats.accepted_steps += window
            else:
                self.flat.write_from(self._anchor)
                seg["rejected"] += window
                self.stats.rejected_steps += window
                seg["end"] = (f"check failed at predicted step {i + 1}: same-batch loss "
                              f"{before:.4g} -> {after:.4g}; kept the {seg['anchor_i']} "
                              f"verified steps before it")
            if seg["end"] is None:
                if any(s.level >= Level.SHORTEN for s in signals):
                    seg["end"] = "divergence signal: " + "; ".join(str(s) for s in signals)
                elif self._evaluate_gate().score < cfg.confidence_threshold:
                    seg["end"] = (f"confidence dropped to {self._gate_report.score:.3f} < "
                                  f"{cfg.confidence_threshold:.2f}")
        else:
            self._apply(fc.delta, scale)
        self._last_delta = fc.delta if scale == 1.0 else fc.delta * scale
        self.stats.predicted_steps += 1
        seg["i"] = i + 1
        if seg["end"] is None and seg["i"] >= horizon:
            seg["end"] = f"horizon of {horizon} predicted steps completed"
        if seg["end"] is not None:
            transition = self._move(Phase.CORRECT, seg["end"],
                                    {"accepted": float(seg["accepted"]),
                                     "rejected": float(seg["rejected"])})
            self._correct_pending = True
        return StepResult(self.stats.steps, Phase.PREDICT, loss_val, predicted=True,
                          backward=False, predicted_loss=fc.loss,
                          confidence=self._gate_report.score if self._gate_report else None,
                          horizon=horizon, accepted=accepted,
                          transition=str(transition) if transition else None)

    def _lean(self) -> bool:
        """While auto-off holds, real steps skip all prediction bookkeeping (update diffs,
        predictor observations, probes) until shortly before the re-probe, so a workload
        where prediction does not pay runs at plain-training speed plus the divergence
        checks. The predictor refills its window in the last ``_LEAN_MARGIN`` steps."""
        if not self.config.segments:
            return True   # no segment will ever use the predictor or the probes
        return (self._auto_off_until is not None
                and self.stats.steps < self._auto_off_until - self._LEAN_MARGIN)

    def _nonfinite_source(self, sig: Signal, before: float, delta: torch.Tensor) -> Signal:
        """Say where a NaN/Inf found by a predicted step's check came from."""
        bad = self.flat.first_nonfinite(self.names)
        if not bool(torch.isfinite(delta).all()):
            where = (f"the predicted update is NaN/Inf (it reached parameter '{bad}')"
                     if bad else "the predicted update is NaN/Inf")
        elif not math.isfinite(before):
            where = (f"parameter '{bad}' is NaN/Inf (changed outside the trainer's steps)" if bad
                     else "the loss is NaN/Inf before the predicted update too: the batch or "
                          "the loss computation is non-finite")
        elif bad is not None:
            where = f"parameter '{bad}' is NaN/Inf (changed outside the trainer's steps)"
        else:
            where = "the loss after a predicted update is NaN/Inf"
        return Signal(sig.name, sig.level, sig.observed, sig.expected,
                      f"{where}; rolled back to the last verified weights")

    def _apply(self, delta: torch.Tensor, scale: float) -> None:
        t = time.perf_counter()
        self.flat.add_(delta, alpha=scale)
        self._work_s += time.perf_counter() - t

    def _segment_verdict(self, before: float, after: float) -> str | None:
        """After a segment: is the model worse than its snapshot on a batch that neither the
        predictions nor their checks saw? Paired on one batch, so batch noise cancels."""
        limit = before * (1.0 + self.config.rollback_tolerance)
        if not math.isfinite(after) or after > limit:
            return (f"on a fresh batch the segment's end has loss {after:.4g} vs {before:.4g} at "
                    f"its snapshot (limit {limit:.4g}); rolled back to the snapshot")
        return None

    def _finish_segment(self, before: float | None, after: float,
                        verdict: str | None) -> float | None:
        """First real step after a segment: residuals, bandit reward, auto-off bookkeeping.

        Progress is measured, not assumed: the segment's relative loss drop on the fresh batch
        (``before`` at the snapshot, ``after`` at the segment's end), converted into
        real-step equivalents with the probed drop of a real step. Cost is the segment's wall
        time in real-step units (or the fixed cost model).
        """
        seg, cfg = self._seg, self.config
        self._correct_pending = False
        residual = None
        if self._last_delta is not None and not verdict:
            residual = self.predictor.residual(self._last_delta, self._update)
            self._residuals.append(residual)
        n_pred = seg["i"]
        cost = self._progress.steps_worth(seg["cost_s"])
        if cfg.cost_model == "fixed" or cost is None:
            cost = n_pred * cfg.fixed_predicted_cost
        cost = self._agreed(cost)   # wall times differ by rank; decisions must not
        drop = 0.0
        if before is not None and math.isfinite(before) and before > 0 and math.isfinite(after):
            drop = (before - after) / before
        kept = 0.0 if verdict else drop
        progress = self._progress.segment_progress(kept, seg["accepted"])
        damage = max(0.0, -drop)
        reward = progress - cost - cfg.bandit_penalty * damage
        if cfg.bandit:
            self.bandit.update(seg["arm"], seg["ctx"],
                               max(-5.0, min(5.0, reward / max(seg["horizon"], 1))))
        self._segments_window.append((progress, cost))
        if verdict:
            self.stats.rollbacks += 1
            self._note(Signal("segment-rollback", Level.ROLLBACK, after, before or 0.0, verdict))
        if cfg.auto_off and len(self._segments_window) >= cfg.auto_off_min_segments:
            prog = sum(p for p, _ in self._segments_window)
            spent = sum(c for _, c in self._segments_window)
            if prog < spent:
                self._auto_off_reason = (
                    f"auto-off: prediction does not pay on this workload: the last "
                    f"{len(self._segments_window)} segments gave {prog:.1f} real-step equivalents "
                    f"of measured progress (eta {self.eta():.2f}) for {spent:.1f} real steps' "
                    f"worth of time; staying in Full")
                self._auto_off_until = (self.stats.steps + cfg.auto_off_reprobe
                                        if cfg.auto_off_reprobe else 1 << 62)
                self._note(Signal("auto-off", Level.FULL, prog, spent, self._auto_off_reason))
        return residual
