"""The four phases and the record of why the trainer moved between them.

Why a record object: "every phase decision explained" means each transition carries the
numbers it was made from, so a user (or the CLI report) can read *why* Predict was or was not
entered without re-running anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Phase(str, Enum):
    WARMUP = "warmup"
    FULL = "full"
    PREDICT = "predict"
    CORRECT = "correct"


@dataclass(frozen=True)
class Transition:
    """One phase change: from, to, at which step, a plain-words reason and its numbers."""

    step: int
    src: Phase
    dst: Phase
    reason: str
    numbers: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        nums = ", ".join(f"{k}={v:.4g}" for k, v in self.numbers.items())
        return f"step {self.step}: {self.src.value} -> {self.dst.value}: {self.reason}" + (
            f" [{nums}]" if nums else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["src"], d["dst"] = self.src.value, self.dst.value
        return d
