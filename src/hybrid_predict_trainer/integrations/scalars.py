"""Running figures derived from the trainer's per-step results.

Why one place: the progress bar, TensorBoard, Lightning's ``self.log`` and the run summary
all show the same numbers (phase, backward passes saved, speed-up estimate); computing them
once keeps every view consistent.
"""
from __future__ import annotations

from typing import Any

from ..metrics import StepResult
from ..phases import Phase

#: Scalar code of each phase, for loggers that only plot numbers.
PHASE_CODES: dict[str, int] = {Phase.WARMUP.value: 0, Phase.FULL.value: 1,
                               Phase.PREDICT.value: 2, Phase.CORRECT.value: 3}


class RunningStats:
    """A metrics hook (``trainer.add_hook(stats)``) that keeps running totals.

    ``speedup_estimate`` is the wall time plain training would have needed for the same steps
    (steps x the mean time of a Full-phase step, which is a plain forward + backward +
    optimizer step) divided by the time really spent. It is a wall-clock estimate: whether
    the predicted steps were worth as much as real ones is measured by the trainer's
    verification and shown in the report, not here.
    """

    def __init__(self) -> None:
        self.steps = 0
        self.backward_passes = 0
        self.predicted_steps = 0
        self.rollbacks = 0
        self.total_s = 0.0
        self._plain_s = 0.0
        self._plain_n = 0
        self._real_s = 0.0
        self._real_n = 0
        self.phase: str = Phase.WARMUP.value
        self.last_loss: float | None = None
        self.last: StepResult | None = None

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> "RunningStats":
        """Continue the totals of a resumed run from ``trainer.summary()``."""
        s = cls()
        s.steps = int(summary.get("steps", 0))
        s.backward_passes = int(summary.get("backward_passes", 0))
        s.predicted_steps = int(summary.get("predicted_steps", 0))
        s.rollbacks = int(summary.get("rollbacks", 0))
        times = summary.get("time_per_phase_s", {})
        counts = summary.get("steps_per_phase", {})
        s.total_s = float(sum(times.values()))
        s._plain_s, s._plain_n = float(times.get("full", 0.0)), int(counts.get("full", 0))
        real = ("warmup", "full", "correct")
        s._real_s = float(sum(times.get(p, 0.0) for p in real))
        s._real_n = int(sum(counts.get(p, 0) for p in real))
        s.phase = str(summary.get("phase", s.phase))
        return s

    def __call__(self, r: StepResult) -> None:
        self.steps += 1
        self.backward_passes += int(r.backward)
        self.predicted_steps += int(r.predicted)
        self.rollbacks += int(r.rolled_back)
        self.total_s += r.wall_s
        phase = r.phase.value if isinstance(r.phase, Phase) else str(r.phase)
        if not r.predicted:
            self._real_s += r.wall_s
            self._real_n += 1
            if phase == Phase.FULL.value:
                self._plain_s += r.wall_s
                self._plain_n += 1
        if r.loss is not None:
            self.last_loss = r.loss
        self.last = r
        self.phase = phase

    @property
    def backward_saved(self) -> int:
        """Steps that ran no backward pass: predicted steps (and any step skipped for a
        NaN/Inf loss, which the trainer counts in ``skipped_nonfinite``)."""
        return self.steps - self.backward_passes

    @property
    def speedup_estimate(self) -> float:
        """Plain-training wall time for these steps / the time really spent (1.0 if unknown)."""
        if self._plain_n:
            per_step = self._plain_s / self._plain_n
        elif self._real_n:
            per_step = self._real_s / self._real_n
        else:
            return 1.0
        return self.steps * per_step / self.total_s if self.total_s > 0 else 1.0

    def scalars(self, r: StepResult | None = None) -> dict[str, float]:
        """The numbers every logger writes for a step (``r`` defaults to the last one)."""
        r = r if r is not None else self.last
        out: dict[str, float] = {
            "backward_passes": float(self.backward_passes),
            "backward_saved": float(self.backward_saved),
            "predicted_steps": float(self.predicted_steps),
            "rollbacks": float(self.rollbacks),
            "speedup_estimate": float(self.speedup_estimate),
        }
        if r is None:
            return out
        phase = r.phase.value if isinstance(r.phase, Phase) else str(r.phase)
        out["phase_code"] = float(PHASE_CODES.get(phase, -1))
        out["predicted"] = float(r.predicted)
        out["rolled_back"] = float(r.rolled_back)
        if r.loss is not None:
            out["loss"] = float(r.loss)
        if r.confidence is not None:
            out["confidence"] = float(r.confidence)
        if r.horizon is not None:
            out["horizon"] = float(r.horizon)
        return out
