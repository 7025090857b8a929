"""The confidence gate that decides whether Predict may start, and whether it can ever open.

score = w_agreement * agreement + w_accuracy * accuracy + w_stability * stability, each in
[0, 1]. Failure case B was a gate whose components could not get within 0.3 of its threshold:
the trainer ran 20 experiments at "0% speedup" without a word. So the gate keeps the best
value each component reached and, once it has been evaluated ``unreachable_after`` times
without opening, says whether even the best-seen components could open it and which
component held it back.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateReport:
    score: float
    threshold: float
    is_open: bool
    components: dict[str, float]          # raw values in [0, 1]
    contributions: dict[str, float]       # weight * value


@dataclass
class ConfidenceGate:
    threshold: float
    weights: dict[str, float]
    unreachable_after: int = 50
    evaluations: int = 0
    opened: int = 0
    best_score: float = 0.0
    best: dict[str, float] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def evaluate(self, components: dict[str, float]) -> GateReport:
        vals = {k: min(1.0, max(0.0, float(components[k]))) for k in self.weights}
        contrib = {k: self.weights[k] * v for k, v in vals.items()}
        score = sum(contrib.values())
        is_open = score >= self.threshold
        self.evaluations += 1
        self.opened += int(is_open)
        self.best_score = max(self.best_score, score)
        for k, v in vals.items():
            self.best[k] = max(self.best.get(k, 0.0), v)
            self.sums[k] = self.sums.get(k, 0.0) + v
        return GateReport(score, self.threshold, is_open, vals, contrib)

    def unreachable(self) -> str | None:
        """A plain-words explanation if the gate looks impossible to open, else None."""
        if self.opened or self.evaluations < self.unreachable_after:
            return None
        ceiling = sum(self.weights[k] * self.best.get(k, 0.0) for k in self.weights)
        means = {k: self.sums.get(k, 0.0) / self.evaluations for k in self.weights}
        # the component whose weighted shortfall from 1.0 is largest holds the gate back
        culprit = max(self.weights, key=lambda k: self.weights[k] * (1.0 - means[k]))
        gap = self.threshold - self.best_score
        need = (self.threshold - (ceiling - self.weights[culprit] * self.best.get(culprit, 0.0)))
        need = need / self.weights[culprit] if self.weights[culprit] > 0 else float("inf")
        verdict = ("cannot open even with every component at its best value so far"
                   if ceiling < self.threshold else "has not opened")
        return (f"confidence gate {verdict}: best score {self.best_score:.3f} vs threshold "
                f"{self.threshold:.2f} (short by {gap:.3f}) after {self.evaluations} checks; "
                f"'{culprit}' (weight {self.weights[culprit]:.2f}) averaged {means[culprit]:.3f}, "
                f"best {self.best.get(culprit, 0.0):.3f}, and would need {need:.3f}. Lower "
                f"confidence_threshold to about {max(self.best_score - 0.02, 0.0):.2f} or use a "
                f"predictor with higher {culprit}.")

    def state_dict(self) -> dict[str, object]:
        return {"evaluations": self.evaluations, "opened": self.opened,
                "best_score": self.best_score, "best": dict(self.best), "sums": dict(self.sums)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.evaluations = int(state["evaluations"])  # type: ignore[arg-type]
        self.opened = int(state["opened"])  # type: ignore[arg-type]
        self.best_score = float(state["best_score"])  # type: ignore[arg-type]
        self.best = {k: float(v) for k, v in dict(state["best"]).items()}  # type: ignore[arg-type]
        self.sums = {k: float(v) for k, v in dict(state["sums"]).items()}  # type: ignore[arg-type]
