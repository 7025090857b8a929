"""The checked jumps onto the slow weights: when one is due, the jump itself, and its check.

Part of :class:`~hybrid_predict_trainer.trainer.HybridTrainer` (a mixin over the trainer's
state, set up in its ``__init__``): Lookahead's synchronisation, except that the next real
step checks each jump and undoes one that raised its batch's loss.
"""
from __future__ import annotations

import math
from typing import Any


from ..control.divergence import Level, Signal
from ..phases import Phase
from .closure import Closure


class JumpSteps:
    """Jumps onto the slow weights at the end of real steps, each checked by the next step."""

    def _jump_due(self) -> bool:
        """A jump ends a real step only when the next step is a plain real step (it checks the
        jump): never into a predicted segment or a pending segment verdict."""
        if (self.jumps is None or self.phase is Phase.PREDICT or self._correct_pending
                or self._fatal is not None):
            return False
        if self._jumps_off_until is not None:
            if self.config.auto_off_reprobe == 0 or self.stats.steps < self._jumps_off_until:
                return False
            self._jumps_off_until = None
            self._jumps_off_reason = None   # summary()'s "paused" means paused now
            self.jumps.reset_window()
            self._event_now = (f"step {self.stats.steps}: jumps onto the slow weights resume "
                               f"after a {self.config.auto_off_reprobe}-step pause")
        if self.jumps.slow is None:   # jump_slow_start: they start at the first jump
            if self.jumps.since >= self.jumps.every:
                self._start_slow()
                self._event_now = (f"step {self.stats.steps}: the slow weights start here, "
                                   "at the first jump, which moves nothing "
                                   f"(jump_slow_start={self.config.jump_slow_start!r})")
            return False
        return self.jumps.due()

    def _start_slow(self) -> None:
        """The slow weights begin at the weights now (a buffer of their own)."""
        assert self.jumps is not None
        start = self.flat.new_buffer()
        self.flat.read_into(start)
        self.jumps.start(start)

    def _jump(self) -> None:
        """End of a real step: keep the weights aside and move onto the slow weights.

        Like Lookahead's synchronisation, the jump is what the model holds between steps (what
        an evaluation sees); unlike it, the next step checks it before stepping from there.
        """
        assert self.jumps is not None
        if self._scratch is None:
            self._scratch = self.flat.new_buffer()
        self.flat.read_into(self._scratch)
        self.flat.write_from(self.jumps.propose(self._scratch))
        self._cur_valid = False
        self._jump_pending = True

    def _jump_check_before(self, closure: Closure) -> tuple[float | None, Any, float | None]:
        """This batch's loss at the weights the jump left (one no-grad forward). The step's
        graded forward at the jumped weights is the other half of the pair: same batch, same
        RNG state (dropout masks), so the two losses differ only by the jump.
        Returns (loss before the jump, RNG state, None); under ``jump_check="guard"``, and
        for the jumps that ``jump_trust`` leaves to the guard, no forward runs and the loss is
        None (the jump is judged against the loss EMA instead).

        After a rejected paired check the next one is likely rejected too, and the usual order
        then pays a third forward to redo the graded one at the weights the jump left. So after
        a rejection the order flips: the check's no-grad forward scores the jumped weights
        where they already are, the weights go back, and the graded forward runs there. That
        returns (None, RNG state, loss at the jump); the decision is the same either way, only
        the wrong guess pays the third forward.

        With ``full_batch`` every step sees the same batch, and the last real step's graded
        forward already scored it, one optimizer step before the jump: that loss is the
        'before' and no check runs a forward of its own. The pair is then one step apart (the
        step's own progress, usually a fraction of a percent to a few percent of the loss,
        counts in the jump's favour); the check still undoes a jump that lands above where the
        last step started."""
        assert self.jumps is not None and self.jumps.slow is not None
        assert self._scratch is not None
        rng = self._rng_get()
        before = at_jump = None
        cfg = self.config
        if cfg.jump_check == "paired" and self.jumps.paired_due(cfg.jump_trust,
                                                                cfg.jump_trust_max_gap):
            outcomes = self.jumps.outcomes
            if cfg.full_batch and self._step_loss is not None:
                before = self._step_loss   # one batch throughout: scored one step ago
            elif outcomes and not outcomes[-1]:
                # the weights sit on the jump: score them there, then go back for the step
                try:
                    at_jump = self._loss_at(None, closure, back=self._scratch)
                except BaseException:   # a closure that raised leaves the jump pending
                    self.flat.write_from(self.jumps.slow)
                    raise
            else:
                # the jumped weights are the slow weights (unchanged until the next jump)
                before = self._loss_at(self._scratch, closure, back=self.jumps.slow)
        self._jump_pending = False   # only now: a closure that raised leaves it to the next step
        return before, rng, at_jump

    def _guard_passes(self, after: float) -> bool:
        """Guard check of a jump: its loss is no blow-up against the loss EMA (fewer than
        ``divergence_sigma`` standard deviations, or at most ``1 + jump_tolerance`` times it)."""
        tr = self.tracker
        if not math.isfinite(after):
            return False
        if tr.count < 2:
            return True
        return (tr.zscore(after) <= self.config.divergence_sigma
                or after <= tr.fast * (1.0 + self.config.jump_tolerance))

    def _judge_jump(self, before: float | None, after: float) -> bool:
        """Whether the jump passes its check (``before`` None: the guard), with its bookkeeping
        and the off-switch; the caller puts the weights where the verdict says."""
        assert self.jumps is not None
        drop: float | None = None
        if before is None:
            ok = self._guard_passes(after)
        else:
            cfg, tol = self.config, self.config.jump_tolerance
            if self.jumps.paired + self.jumps.rejected < cfg.jump_grace:
                tol = max(tol, cfg.jump_grace_tolerance)
            ok = (math.isfinite(after) and math.isfinite(before)
                  and after <= before * (1.0 + tol))
            drop = (before - after) / before if ok and before > 0 else 0.0
        if self.jumps.record(ok, drop) and self.config.auto_off:
            w = self.jumps.outcomes
            self._jumps_off_until = (self.stats.steps + self.config.auto_off_reprobe
                                     if self.config.auto_off_reprobe else 1 << 62)
            what = ("raised no loss on their batch (each rejected jump costs an extra forward "
                    "for nothing)" if before is not None else
                    "stayed clear of a loss blow-up (each rejected jump costs a forward)")
            again = (f"trying again in {self.config.auto_off_reprobe} steps"
                     if self.config.auto_off_reprobe else "not trying again (auto_off_reprobe=0)")
            self._jumps_off_reason = (f"step {self.stats.steps}: jumps onto the slow weights "
                                      f"paused: only {sum(w)} of the last {len(w)} {what}; "
                                      f"{again}")
            self._note(Signal("jumps-off", Level.OK, float(sum(w)),
                              float(self.jumps.min_accept), self._jumps_off_reason))
            self._event_now = self._jumps_off_reason
        return ok
