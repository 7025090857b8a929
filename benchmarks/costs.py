"""Per-step cost micro-benchmark: forward, backward, optimizer step, no-grad forward.

Why: the speed a predicted step can buy is bounded by what it skips. With the forward kept
to verify a prediction, the bound is 3/(3-2f) if a backward costs two forwards; the measured
ratio tells how far each workload is from that rule of thumb, so it is printed with every run.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from .workloads import Data, Workload


@dataclass(frozen=True)
class StepCosts:
    """Median milliseconds of each part of one training step."""

    fwd_ms: float
    bwd_ms: float
    opt_ms: float
    nograd_fwd_ms: float

    @property
    def full_ms(self) -> float:
        return self.fwd_ms + self.bwd_ms + self.opt_ms

    @property
    def bwd_fwd_ratio(self) -> float:
        return self.bwd_ms / self.fwd_ms

    def to_dict(self) -> dict[str, float]:
        d = asdict(self)
        d.update(full_ms=self.full_ms, bwd_fwd_ratio=self.bwd_fwd_ratio)
        return {k: round(v, 4) for k, v in d.items()}


def physical_bound(f: float) -> float:
    """Speed-up limit 3/(3-2f) when a fraction ``f`` of steps is predicted, forward kept."""
    return 3.0 / (3.0 - 2.0 * f)


def measured_bound(costs: StepCosts, f: float) -> float:
    """The same limit from measured costs: a predicted step costs one no-grad forward."""
    return costs.full_ms / ((1.0 - f) * costs.full_ms + f * costs.nograd_fwd_ms)


def measure_costs(workload: Workload, data: Data, reps: int = 20, warmup: int = 5) -> StepCosts:
    """Time each part of an AdamW step separately on real batches; medians over ``reps``."""
    model = workload.model(data, init_seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=workload.default_lr)
    batches = workload.batches(data, 0)
    parts: dict[str, list[float]] = {"fwd": [], "bwd": [], "opt": [], "ng": []}
    for i in range(warmup + reps):
        x, y = next(batches)
        t0 = time.perf_counter()
        loss = workload.loss(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        with torch.no_grad():
            workload.loss(model(x), y)
        t4 = time.perf_counter()
        if i >= warmup:
            for key, dt in zip(("fwd", "bwd", "opt", "ng"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key].append(dt * 1e3)
    med = {k: statistics.median(v) for k, v in parts.items()}
    return StepCosts(med["fwd"], med["bwd"], med["opt"], med["ng"])
