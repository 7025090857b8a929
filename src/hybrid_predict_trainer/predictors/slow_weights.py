"""Checked jumps onto slow weights: a predicted update that costs one forward, not a batch.

Why: the averaged trajectory of a mini-batch optimizer has a lower loss than its iterate
(Lookahead, SWA, weight EMAs; ``python -m benchmarks.averaging_probe`` measured -11% validation
loss on mnist-mlp), but a predicted *segment* that jumps there spends a whole batch on checks.
Here the jump costs one forward instead: every ``every`` real steps the trainer ends the step
on the slow weights (like Lookahead's synchronisation), and the next real step checks it on
its own batch: one no-grad forward at the weights before the jump, and the step's graded
forward at the jumped weights. Accepted (the batch's loss did not rise), the optimizer steps
from the jumped point; rejected, the weights go back and the graded forward is redone. The
slow weights follow Lookahead (Zhang et al., 2019): ``slow <- slow + alpha * (weights - slow)``
at every jump, accepted or not.

This object holds the slow weights and the bookkeeping of outcomes; the trainer owns the
parameters, the closure and the check. One parameter copy.
"""
from __future__ import annotations

from collections import deque
from typing import Any

import torch


class SlowWeights:
    """Lookahead-style slow weights with a jump cadence and an off-switch for failing jumps.

    Args:
        every: real steps between jumps (Lookahead's k).
        alpha: how far the slow weights move towards the weights at each jump.
        window: outcomes remembered for the off-switch.
        min_accept: fewer accepted jumps than this in a full window switches jumps off
            (each rejected jump costs an extra forward and gives nothing).
        alpha_step: with > 0, ``adapt`` moves alpha by this much after each checked jump.
        alpha_max: the highest alpha ``adapt`` reaches (the lowest is ``alpha``).
        calm_alpha: alpha while the paired checks find the jumps calm (``note_change``);
            0: off. It shortens the configured pull, so it must lie above ``alpha``, and it
            cannot share alpha with ``alpha_step``.
        calm_tolerance: the largest change of a batch's loss, either way, of a calm jump.
    """

    def __init__(self, every: int, alpha: float, window: int = 6, min_accept: int = 2,
                 alpha_step: float = 0.0, alpha_max: float = 0.9, calm_alpha: float = 0.0,
                 calm_tolerance: float = 0.05) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        if not 1 <= min_accept <= window:
            raise ValueError("min_accept must be in [1, window]")
        if calm_alpha and (calm_alpha <= alpha or alpha_step > 0.0 or calm_alpha > 1.0):
            raise ValueError("calm_alpha must be 0, or in (alpha, 1] with alpha_step 0")
        self.every, self.alpha = every, alpha
        self.alpha_step, self.alpha_min, self.alpha_max = alpha_step, alpha, max(alpha, alpha_max)
        self.alpha_peak = alpha              # the highest alpha used
        self.calm_alpha, self.calm_tolerance = calm_alpha, calm_tolerance
        self.calm: bool | None = None        # None: no paired check yet (or calm_alpha off)
        self.slow: torch.Tensor | None = None
        self.since = 0                      # real steps since the last jump (or the start)
        self.accepted = 0
        self.rejected = 0
        self.drops: float = 0.0             # summed relative batch-loss drops of accepted jumps
        self.paired = 0                     # accepted jumps whose drop was measured (paired)
        self.outcomes: deque[bool] = deque(maxlen=window)
        self.min_accept = min_accept
        self.streak = 0                     # paired checks in a row that kept their jump
        self.unpaired = 0                   # guard-checked jumps since the last paired one

    def start(self, weights: torch.Tensor) -> None:
        """Slow weights begin at ``weights``: where training starts (Lookahead's choice) or
        where the first jump would have been. The tensor is kept, not copied: pass a buffer
        of your own. The next jump is ``every`` steps away."""
        self.slow = weights
        self.since = 0

    def tick(self) -> None:
        """One real step was taken."""
        self.since += 1

    def due(self) -> bool:
        return self.slow is not None and self.since >= self.every

    def propose(self, weights: torch.Tensor) -> torch.Tensor:
        """Move the slow weights towards ``weights`` and return them: the point to jump to."""
        assert self.slow is not None, "start() before propose()"
        self.slow.lerp_(weights, self.alpha)   # slow + alpha * (weights - slow), one pass
        self.since = 0
        return self.slow

    def adapt(self, slope: float | None) -> None:
        """Shorten the pull while the loss falls towards the weights the jump left.

        ``slope`` is ``gradient . (weights before the jump - jumped weights)`` at the jumped
        weights, on the checking batch (None: the jump was undone, it went too far). Below
        zero, the loss falls towards the weights the jump left, so alpha rises by
        ``alpha_step``; otherwise it falls back by as much, never below the configured alpha.
        It costs one dot product: the step computes that gradient anyway. Why only upwards:
        the first synchronisations pull towards the start and slow a steadily falling loss,
        which this slope sees; a pull longer than the configured one, which the slope also
        asks for later on, makes the slow weights lag for every later jump, which one
        batch's slope cannot see (benchmarks/RESULTS.md)."""
        if self.alpha_step <= 0.0:
            return
        up = slope is None or slope < 0.0
        a = self.alpha + (self.alpha_step if up else -self.alpha_step)
        self.alpha = min(self.alpha_max, max(self.alpha_min, a))
        self.alpha_peak = max(self.alpha_peak, self.alpha)

    def note_change(self, rise: float) -> None:
        """A paired check's relative change of its batch's loss (negative: the jump lowered
        it). With ``calm_alpha``: alpha is ``calm_alpha`` while every such change stayed
        within ``calm_tolerance`` either way, and the configured alpha for good from the first
        that did not. Why: the check measures what the averaging does to a batch. Where it
        barely moves the loss (a transformer whose loss falls steadily: 0.7% in the median
        after the first jumps), the pull half-way back buys little and costs progress at every jump;
        where it moves the loss a lot, either way (8-48% on the first jumps of the other
        benchmark workloads, 8-21% drops later), the averaging matters and the configured
        pull stays (benchmarks/RESULTS.md)."""
        if self.calm_alpha <= 0.0 or self.calm is False:
            return
        self.calm = abs(rise) <= self.calm_tolerance
        self.alpha = self.calm_alpha if self.calm else self.alpha_min
        self.alpha_peak = max(self.alpha_peak, self.alpha)

    def paired_due(self, trust: int, max_gap: int = 1) -> bool:
        """Whether the next jump needs a paired check: always while fewer than ``trust``
        paired checks in a row kept their jump (``trust`` 0: always). After that the jumps
        between two paired checks are guard-checked, ``trust - 1`` of them at first, twice as
        many after each further paired check that keeps its jump, at most ``max_gap`` (but
        never fewer than ``trust - 1``). Why the doubling: where every check keeps its jump,
        each check's forward is pure cost, and the odds that the next one rejects fall with
        the streak; the cap bounds how many jumps pass before one that stopped paying is
        caught."""
        if trust == 0 or self.streak < trust:
            return True
        gap = (trust - 1) << min(self.streak - trust, 30)
        return self.unpaired >= min(gap, max(max_gap, trust - 1))

    def record(self, accepted: bool, drop: float | None) -> bool:
        """Note a checked jump (``drop`` None: no paired measurement, e.g. a guard check);
        returns True when the window says jumps do not pay."""
        if not accepted:
            self.streak = self.unpaired = 0
        elif drop is None:
            self.unpaired += 1
        else:
            self.streak += 1
            self.unpaired = 0
        self.outcomes.append(accepted)
        if accepted:
            self.accepted += 1
            if drop is not None:
                self.drops += drop
                self.paired += 1
        else:
            self.rejected += 1
        return (len(self.outcomes) == self.outcomes.maxlen
                and sum(self.outcomes) < self.min_accept)

    def reset_window(self) -> None:
        self.outcomes.clear()
        self.streak = self.unpaired = 0

    def memory_copies(self) -> float:
        return 0.0 if self.slow is None else 1.0

    def summary(self) -> dict[str, Any]:
        n = self.accepted + self.rejected
        return {"every": self.every, "alpha": self.alpha, "alpha_peak": self.alpha_peak,
                "alpha_step": self.alpha_step, "calm_alpha": self.calm_alpha,
                "calm": self.calm, "accepted": self.accepted,
                "rejected": self.rejected,
                "mean_drop": self.drops / self.paired if self.paired else None,
                "acceptance": self.accepted / n if n else None}

    def state_dict(self) -> dict[str, Any]:
        return {"slow": None if self.slow is None else self.slow.clone(), "since": self.since,
                "accepted": self.accepted, "rejected": self.rejected, "drops": self.drops,
                "paired": self.paired, "outcomes": list(self.outcomes),
                "streak": self.streak, "unpaired": self.unpaired, "alpha": self.alpha,
                "alpha_peak": self.alpha_peak, "calm": self.calm}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        slow = state["slow"]
        self.slow = None if slow is None else slow.clone()
        self.since = int(state["since"])
        self.accepted, self.rejected = int(state["accepted"]), int(state["rejected"])
        self.drops = float(state["drops"])
        # absent in checkpoints written before guard checks: every accepted jump was paired
        self.paired = int(state.get("paired", self.accepted))
        self.outcomes = deque((bool(x) for x in state["outcomes"]), maxlen=self.outcomes.maxlen)
        # absent in checkpoints written before thinned checks: start checking every jump
        self.streak, self.unpaired = int(state.get("streak", 0)), int(state.get("unpaired", 0))
        if self.alpha_step > 0.0 and "alpha" in state:
            # an adapted alpha resumes where it was, within this run's range; a fixed one is
            # the configured value, so a resumed run may change it
            self.alpha = min(self.alpha_max, max(self.alpha_min, float(state["alpha"])))
            self.alpha_peak = max(self.alpha, float(state.get("alpha_peak", self.alpha)))
        if self.calm_alpha > 0.0:
            # the calm verdict resumes (None: no paired check yet, or a checkpoint written
            # before the rule); alpha follows it under this run's settings
            calm = state.get("calm")
            self.calm = None if calm is None else bool(calm)
            self.alpha = self.calm_alpha if self.calm else self.alpha_min
            self.alpha_peak = max(self.alpha, float(state.get("alpha_peak", self.alpha)))
