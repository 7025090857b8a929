"""Per-step records, JSONL logging, metric hooks and the end-of-run summary.

Why plain dataclasses and JSON lines: they are trivially parsed by the CLI report, pandas or
a user's own logger, and appending one line per step never rewrites earlier data.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checkpoint import ensure_dir
from .phases import Phase


@dataclass(frozen=True)
class StepResult:
    """What one call of ``HybridTrainer.step`` did.

    ``loss`` is the loss the closure returned on this step (on an unverified predicted step,
    where the closure is not called, it is ``None``). ``predicted`` is True when the update
    came from the predictor; ``backward`` is True when a backward pass ran. ``jumped`` is set
    on a real step that tried a jump onto the slow weights: True when its check accepted it.
    When that check was paired, ``components["jump_rise"]`` is the number behind the verdict:
    the batch's loss at the jumped weights relative to the weights the jump left, minus 1
    (positive: the jump raised it). ``transition`` explains a phase change made on this step;
    ``event`` explains a decision that is no phase change: the jumps onto the slow weights
    paused (too few of the recent ones passed their check) or resumed after that pause.
    """

    step: int
    phase: Phase
    loss: float | None
    predicted: bool
    backward: bool
    predicted_loss: float | None = None
    confidence: float | None = None
    horizon: int | None = None
    accepted: bool | None = None
    jumped: bool | None = None
    rolled_back: bool = False
    transition: str | None = None
    event: str | None = None
    components: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def reason(self) -> str | None:
        """The reason of the phase change that happened on this step, if any."""
        return self.transition

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["phase"] = self.phase.value
        return d


MetricsHook = Callable[[StepResult], None]


class JsonlWriter:
    """Appends one JSON object per line; flushes every ``flush_every`` records."""

    def __init__(self, path: str | os.PathLike[str], flush_every: int = 50) -> None:
        self.path = Path(path)
        ensure_dir(self.path.parent)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
        self._fh = open(fd, "a", encoding="utf-8")
        self._n = 0
        self._flush_every = flush_every

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, default=_jsonable) + "\n")
        self._n += 1
        if self._n % self._flush_every == 0:
            self._fh.flush()

    def __call__(self, result: StepResult) -> None:
        self.write({"type": "step", **result.to_dict()})

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Phase):
        return obj.value
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)


@dataclass
class RunStats:
    """Counters the trainer keeps; ``summary()`` derives the user-facing figures from them."""

    steps: int = 0
    backward_passes: int = 0
    forward_checks: int = 0
    predicted_steps: int = 0
    accepted_steps: int = 0
    rejected_steps: int = 0
    segments: int = 0
    rollbacks: int = 0
    skipped_nonfinite: int = 0
    time_per_phase: dict[str, float] = field(
        default_factory=lambda: {p.value: 0.0 for p in Phase})
    steps_per_phase: dict[str, int] = field(default_factory=lambda: {p.value: 0 for p in Phase})
    overhead_s: float = 0.0
    user_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        total = sum(self.time_per_phase.values())
        return {
            "steps": self.steps,
            "backward_passes": self.backward_passes,
            "predicted_steps": self.predicted_steps,
            "predicted_fraction": self.predicted_steps / self.steps if self.steps else 0.0,
            "accepted_steps": self.accepted_steps,
            "rejected_steps": self.rejected_steps,
            "forward_checks": self.forward_checks,
            "segments": self.segments,
            "rollbacks": self.rollbacks,
            "skipped_nonfinite": self.skipped_nonfinite,
            "time_per_phase_s": dict(self.time_per_phase),
            "steps_per_phase": dict(self.steps_per_phase),
            "wall_s": total,
            "overhead_s": self.overhead_s,
            "overhead_per_step_ms": 1e3 * self.overhead_s / self.steps if self.steps else 0.0,
            "overhead_pct": 100.0 * self.overhead_s / total if total else 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
