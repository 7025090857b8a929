"""``Finding``: one diagnosed problem, and the registry of stable finding codes.

Why a fixed format: the rule-based monitors that users found most useful all explain a problem
the same way (symptom, place, observed against expected numbers, one suggested action). A
frozen record with those fields can be printed for a person, raised as an error, or written as
one JSON line, and its ``code`` is a stable key that tests, dashboards and suppressions use.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}


class HealthWarning(UserWarning):
    """Category of the warnings the monitor emits under ``policy="warn"``.

    A dedicated class lets users filter or escalate exactly these warnings
    (``warnings.simplefilter("error", HealthWarning)``) without touching others.
    """


@dataclass(frozen=True)
class CodeInfo:
    """What a finding code means; the text is reused by ``docs/monitor.md`` and ``report()``."""

    severity: Severity
    title: str


# Stable codes. Renaming one is a breaking change: suppressions and dashboards key on them.
CODES: dict[str, CodeInfo] = {
    "loss-broadcast": CodeInfo("error", "loss inputs of different shapes were broadcast"),
    "loss-on-normalized": CodeInfo("warning", "MSE-type loss on unit-norm vectors"),
    "loss-term-dominates": CodeInfo("warning", "one loss term holds most of the total"),
    "output-collapse": CodeInfo("warning", "outputs lost their spread"),
    "rank-collapse": CodeInfo("warning", "activations collapsed to a low effective rank"),
    "stale-statistic": CodeInfo("warning", "a tracked statistic never moves"),
    "unreachable-threshold": CodeInfo("warning", "a gate can never open"),
    "graph-across-steps": CodeInfo("error", "the autograd graph reaches an earlier step"),
    "vanishing-gradients": CodeInfo("warning", "gradients vanished"),
    "exploding-gradients": CodeInfo("warning", "gradients exploded"),
    "non-finite": CodeInfo("error", "NaN or Inf value"),
    "params-not-updated": CodeInfo("warning", "trainable parameters never change"),
    "params-not-in-optimizer": CodeInfo("warning", "trainable parameters in no optimizer"),
    "missing-zero-grad": CodeInfo("warning", "gradients accumulate across optimizer steps"),
}


@dataclass(frozen=True)
class Finding:
    """One problem the monitor diagnosed.

    ``where`` names the parameter, module, loss term or statistic; ``observed`` and
    ``expected`` are short strings with numbers; ``message`` says the symptom in plain words and
    ``suggestion`` gives one action. ``step`` is the first step (1-based) the problem was seen
    and ``count`` how many times it was seen since (the monitor reports each code+where once).
    """

    code: str
    severity: Severity
    step: int
    where: str
    observed: str
    expected: str
    message: str
    suggestion: str
    count: int = 1

    @property
    def key(self) -> tuple[str, str]:
        """Deduplication key: the same problem in the same place is one finding."""
        return (self.code, self.where)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able mapping (for the JSONL log and ``summary()``)."""
        return asdict(self)

    def __str__(self) -> str:
        seen = f" (seen {self.count} times)" if self.count > 1 else ""
        return (f"Step {self.step}, {self.where}: {self.message} "
                f"Observed {self.observed}; expected {self.expected}. "
                f"Suggestion: {self.suggestion} [{self.code}, {self.severity}{seen}]")
