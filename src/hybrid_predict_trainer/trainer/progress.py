"""What a predicted step is worth, in real steps: measured, never assumed.

Why: a predicted segment pays only if the loss it removes is worth more real steps than the
wall time it costs. Both sides are measured here. A real step's progress is probed every
``PROBE_EVERY`` real steps (its relative loss drop on a batch it never saw, paired on that
batch); a segment's, on the first fresh batch after it. Their ratio is eta, the number behind
auto-off and the horizon bandit's reward.
"""
from __future__ import annotations

import math
from typing import Any


class ProgressMeter:
    """Running measurements of real steps (time, probed drop) and of the segments' drops."""

    #: Real steps between two probes of a real step's drop (each costs one forward).
    PROBE_EVERY = 10
    #: Probes before a drop converts into real steps (until then: one accepted step each).
    MIN_PROBES = 3

    def __init__(self) -> None:
        self.step_s = 0.0          # EMA of a real step's wall time
        self.real_drop = 0.0       # EMA of a real step's probed relative loss drop
        self.probes = 0
        self.since_probe = 0       # real steps recorded since the last probe
        self.seg_drop_sum = 0.0    # summed fresh-batch drops of the segments
        self.seg_accepted = 0      # summed accepted predicted steps of those segments

    def real_step_time(self, seconds: float) -> None:
        a = 0.1 if self.step_s else 1.0
        self.step_s += a * (seconds - self.step_s)

    def probe_ready(self) -> bool:
        return self.since_probe >= self.PROBE_EVERY

    def probe_started(self) -> None:
        """A probe's 'before' forward ran: the next one is ``PROBE_EVERY`` real steps away."""
        self.since_probe = 0

    def real_step_recorded(self) -> None:
        self.since_probe += 1

    def record_probe(self, before: float, after: float) -> None:
        """A real step took this batch's loss from ``before`` to ``after``."""
        if math.isfinite(before) and math.isfinite(after) and before > 0:
            drop = (before - after) / before
            a = 0.1 if self.probes else 1.0
            self.real_drop += a * (drop - self.real_drop)
            self.probes += 1

    def steps_worth(self, seconds: float) -> float | None:
        """Wall time in real-step units (None before a real step was timed)."""
        return seconds / self.step_s if self.step_s > 0 else None

    def segment_progress(self, drop: float, accepted: int) -> float:
        """Record a segment's kept relative drop and return it in real-step equivalents."""
        self.seg_drop_sum += drop
        self.seg_accepted += accepted
        return self.real_equivalents(drop, accepted)

    def real_equivalents(self, drop: float, accepted: int) -> float:
        """A relative loss drop expressed in real steps (accepted steps before real probes)."""
        if self.probes < self.MIN_PROBES:
            return float(accepted)
        # A real step's probed drop can reach ~0 late in training; floor it, and cap a
        # predicted step at two real steps' worth so one lucky batch cannot dominate.
        return max(-2.0 * max(accepted, 1),
                   min(2.0 * accepted, drop / max(self.real_drop, 1e-4)))

    def eta(self) -> float:
        """An accepted predicted step's progress relative to a real step's (1.0 until the
        probes and the segments say otherwise)."""
        if self.seg_accepted <= 0:
            return 1.0
        per_step = self.seg_drop_sum / self.seg_accepted
        return self.real_equivalents(per_step, 1) if self.probes >= self.MIN_PROBES else 1.0

    def state_dict(self) -> dict[str, Any]:
        # the keys of the trainer's checkpoints, from before this object held them
        return {"t_real": self.step_s, "d_real": self.real_drop,
                "seg_drop_sum": self.seg_drop_sum, "seg_accepted_sum": self.seg_accepted,
                "n_real_probe": self.probes, "real_since_probe": self.since_probe}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_s, self.real_drop = float(state["t_real"]), float(state["d_real"])
        self.seg_drop_sum = float(state["seg_drop_sum"])
        self.seg_accepted = int(state["seg_accepted_sum"])
        self.probes = int(state["n_real_probe"])
        self.since_probe = int(state["real_since_probe"])
