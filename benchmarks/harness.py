"""Runs methods over one workload: tuning on its own seed, then interleaved, timed seeds.

What is timed, and why:
- Only the method's ``step`` call is inside the stopwatch. Fetching the (already in-memory)
  batch and evaluating on the validation subset are outside it, so evaluation frequency
  never changes a method's time.
- Every method of a seed starts from the same initial weights and draws the same batches.
- ``adamw-tuned`` runs first in each seed; its training time over the step budget is the wall
  time every other method gets (so "quality at equal wall time" is exact). The other methods
  then run in an order rotated from seed to seed, so no method always runs right after it.
- Each run records the CPU cores other processes used (``sysload``); a run above the
  threshold is repeated and the least-disturbed attempt kept.
"""
from __future__ import annotations

import gc
import math
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import sysload
from .analysis import TARGET_SLACK, crossing, final_loss, smoothed, tail_mean
from .methods import LR_GRID, METHODS, Method
from .workloads import Data, Workload

TUNE_SEED = 1000
WARMUP_SEED = 999
Log = Callable[[str], None]


@dataclass
class BenchConfig:
    """Knobs of one benchmark invocation (the CLI fills these)."""

    seeds: int = 3
    steps: int | None = None          # None: the workload's own budget
    max_steps_factor: float = 4.0     # step cap for time-capped methods: this x the budget
    time_cap_factor: float = 1.5      # a method may train this x the baseline's time to
    #                                   reach the target (slower ones report "not reached")
    load_threshold: float = 0.2       # cores used by others that flags a run
    max_repeats: int = 2              # extra attempts for a flagged run
    warmup_steps: int = 40            # untimed steps per method before any timed run
    tune: bool = True                 # False: every method runs at the default lr


@dataclass
class RunResult:
    """One training run. ``points`` rows: (step, train_s, backward_passes, predicted, val)."""

    workload: str
    method: str
    lr: float
    seed: int
    role: str                                    # "tune" | "eval" | "ref"
    points: list[tuple[int, float, int, int, float]] = field(default_factory=list)
    steps: int = 0
    backward_passes: int = 0
    predicted_steps: int = 0
    train_time_s: float = 0.0
    eval_time_s: float = 0.0
    stopped: str = "budget"                      # budget | time | target | diverged | error
    error: str | None = None
    other_cores: float | None = None
    attempts: int = 1
    flagged: bool = False
    peak_rss_mb: float | None = None
    start_rss_mb: float | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    timeline: list[tuple[str, int]] = field(default_factory=list)   # run-length phases
    rollback_steps: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.stopped != "diverged"

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["points"] = [[s, round(t, 5), b, p, round(v, 6)] for s, t, b, p, v in self.points]
        d["timeline"] = [list(x) for x in self.timeline]
        return d


def _append_phase(timeline: list[tuple[str, int]], phase: str) -> None:
    if timeline and timeline[-1][0] == phase:
        timeline[-1] = (phase, timeline[-1][1] + 1)
    else:
        timeline.append((phase, 1))


def run_once(workload: Workload, data: Data, method: Method, lr: float, seed: int, *,
             role: str, max_steps: int, time_cap: float | None = None,
             stop_at: float | None = None, min_time: float = 0.0,
             min_steps: int = 0) -> RunResult:
    """Train one method from the seed's initial weights; evaluate every ``eval_every`` steps.

    Stops at ``max_steps``; or at the first evaluation after ``time_cap`` seconds of training
    time; or once the smoothed validation loss (see ``analysis.smoothed``) is at or below
    ``stop_at`` and at least ``min_time`` seconds and ``min_steps`` steps were trained; or when
    the validation loss is non-finite or above three times its initial value (diverged).
    """
    res = RunResult(workload.name, method.name, lr, seed, role)
    gc.collect()
    model = workload.model(data, init_seed=seed)
    torch.manual_seed(seed)
    batches = workload.batches(data, seed)
    sysload.reset_peak_rss()
    res.start_rss_mb = sysload.rss_mb()
    meter = sysload.LoadMeter()
    meter.start()
    try:
        runner = method.make(workload, model, lr, seed)
        t0 = time.perf_counter()
        v0 = workload.evaluate(model, data)
        res.eval_time_s += time.perf_counter() - t0
        res.points.append((0, 0.0, 0, 0, v0))
        for step in range(1, max_steps + 1):
            x, y = next(batches)
            t0 = time.perf_counter()
            rec = runner.step(x, y)
            res.train_time_s += time.perf_counter() - t0
            res.steps = step
            res.backward_passes += rec.backward
            res.predicted_steps += rec.predicted
            if method.hybrid:
                _append_phase(res.timeline, rec.phase)
                if rec.rolled_back:
                    res.rollback_steps.append(step)
            if step % workload.eval_every and step != max_steps:
                continue
            t0 = time.perf_counter()
            val = workload.evaluate(model, data)
            res.eval_time_s += time.perf_counter() - t0
            res.points.append((step, res.train_time_s, res.backward_passes,
                               res.predicted_steps, val))
            if not math.isfinite(val) or val > 3.0 * v0:
                res.stopped = "diverged"
                break
            if (stop_at is not None and smoothed(res.points)[-1][4] <= stop_at
                    and res.train_time_s >= min_time and step >= min_steps):
                res.stopped = "target"
                break
            if time_cap is not None and res.train_time_s >= time_cap:
                res.stopped = "time"
                break
        res.stats = runner.stats()
        if role == "eval" and method.name == "adamw-tuned":
            res.stats["val_rel_se"] = workload.val_relative_se(model, data)
    except Exception as exc:  # noqa: BLE001 - one broken method must not end the benchmark
        res.stopped = "error"
        res.error = f"{type(exc).__name__}: {exc}"
        res.stats = {"traceback": traceback.format_exc(limit=4)}
    load = meter.stop()
    res.other_cores = load["other_cores"]
    res.peak_rss_mb = sysload.peak_rss_mb()
    return res


class Harness:
    """Runs one workload: warm-up, tuning, interleaved seeds; collects every RunResult."""

    def __init__(self, workload: Workload, data: Data, methods: list[Method],
                 config: BenchConfig, log: Log = print) -> None:
        self.workload, self.data, self.methods, self.cfg, self.log = (
            workload, data, methods, config, log)
        self.budget = config.steps or workload.steps
        self.runs: list[RunResult] = []
        self.lrs: dict[str, float] = {}
        self.tuning: dict[str, dict[str, Any]] = {}

    # --- one run, repeated while another process disturbed it ----------------------------

    def run(self, method: Method, lr: float, seed: int, role: str, **kw: Any) -> RunResult:
        best: RunResult | None = None
        for attempt in range(1, self.cfg.max_repeats + 2):
            res = run_once(self.workload, self.data, method, lr, seed, role=role, **kw)
            res.attempts = attempt
            res.flagged = (res.other_cores or 0.0) > self.cfg.load_threshold
            if best is None or (res.other_cores or 0.0) < (best.other_cores or 0.0):
                best = res
            if not res.flagged or res.error or attempt > self.cfg.max_repeats:
                break
            self.log(f"    repeat: {method.name} saw {res.other_cores:.2f} cores of other load")
        assert best is not None
        best.attempts = attempt
        self.runs.append(best)
        self._log_run(best)
        return best

    def _log_run(self, r: RunResult) -> None:
        last = r.points[-1][4] if r.points else float("nan")
        load = f"{r.other_cores:.2f}" if r.other_cores is not None else "n/a"
        extra = f" predicted={r.predicted_steps}" if r.predicted_steps else ""
        err = f" ERROR {r.error}" if r.error else ""
        self.log(f"  [{r.role}] {r.method:22s} lr={r.lr:.2e} seed={r.seed} steps={r.steps} "
                 f"train={r.train_time_s:.2f}s val={last:.4f} stop={r.stopped} "
                 f"load={load}{extra}{err}")

    # --- phases --------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Untimed steps of every method so lazy initialisation never lands in a timed run."""
        seen = set()
        for method in self.methods:
            if method.make in seen:   # adamw and adamw-tuned share a runner
                continue
            seen.add(method.make)
            run_once(self.workload, self.data, method, self.workload.default_lr, WARMUP_SEED,
                     role="warmup", max_steps=self.cfg.warmup_steps)

    def tune(self) -> None:
        """Pick each method's lr from the grid on the tuning seed (same budget for all).

        AdamW's lr is the one with the lowest validation loss at the budget (mean of the last
        three evaluations, to damp one lucky evaluation). Every other method then gets the
        same four runs, each capped at the tuned AdamW run's training time, and keeps the lr
        that reaches that run's target (that same mean + 0.5%) fastest; if none reaches it, the
        lowest loss at the time cap.
        """
        grid = [self.workload.default_lr * m for m in LR_GRID]
        default = self.workload.default_lr
        by_name = {m.name: m for m in self.methods}
        adamw = by_name.get("adamw-tuned", METHODS["adamw-tuned"])
        if not self.cfg.tune:
            self.lrs = {m.name: default for m in self.methods}
            self.lrs["adamw-tuned"] = default
            return
        base_runs = {lr: self.run(adamw, lr, TUNE_SEED, "tune", max_steps=self.budget)
                     for lr in grid}
        scores = {lr: (tail_mean(r.points) if r.ok else math.inf) for lr, r in base_runs.items()}
        best_lr = min(scores, key=lambda lr: scores[lr])
        base = base_runs[best_lr]
        self.lrs["adamw-tuned"] = best_lr
        self.tuning["adamw-tuned"] = {"criterion": "val loss at budget (mean of last 3 evals)",
                                      "scores": {f"{lr:g}": s for lr, s in scores.items()}}
        target = tail_mean(base.points) * TARGET_SLACK
        cap = base.train_time_s * self.cfg.time_cap_factor
        others = [m for m in self.methods if m.tuned and m.name != "adamw-tuned"]
        tune_runs: dict[str, dict[float, RunResult]] = {m.name: {} for m in others}
        for lr in grid:
            for method in others:
                tune_runs[method.name][lr] = self.run(
                    method, lr, TUNE_SEED, "tune", max_steps=int(self.budget *
                                                                 self.cfg.max_steps_factor),
                    time_cap=cap, stop_at=target)
        for method in others:
            table: dict[str, Any] = {}
            reached: dict[float, float] = {}
            for lr, r in tune_runs[method.name].items():
                hit = crossing(r.points, target) if r.ok else None
                table[f"{lr:g}"] = ({"time_to_target_s": hit[0]} if hit else
                                    {"loss_at_cap": (final_loss(r.points) if r.ok else None)})
                if hit:
                    reached[lr] = hit[0]
            if reached:
                self.lrs[method.name] = min(reached, key=lambda lr: reached[lr])
            else:
                finals = {lr: (final_loss(r.points) if r.ok else math.inf)
                          for lr, r in tune_runs[method.name].items()}
                self.lrs[method.name] = min(finals, key=lambda lr: finals[lr])
            self.tuning[method.name] = {"criterion": "time to tuning target", "target": target,
                                        "grid": table}
        for method in self.methods:
            if not method.tuned:
                self.lrs[method.name] = default

    def evaluate_seeds(self) -> None:
        """The timed runs: for each seed, the baseline first, then the rest, rotated."""
        by_name = {m.name: m for m in self.methods}
        base_method = by_name.get("adamw-tuned", METHODS["adamw-tuned"])
        others = [m for m in self.methods if m.name != "adamw-tuned"]
        for seed in range(self.cfg.seeds):
            self.log(f"  seed {seed}")
            base = self.run(base_method, self.lrs["adamw-tuned"], seed, "eval",
                            max_steps=self.budget)
            if not base.ok:
                self.log(f"  seed {seed}: the baseline failed ({base.stopped}); seed skipped")
                continue
            # Every method trains at least the baseline's time (quality at equal wall time),
            # then on until it reaches the target or 1.5x that time.
            equal, target = base.train_time_s, tail_mean(base.points) * TARGET_SLACK
            shift = seed % max(len(others), 1)
            for method in others[shift:] + others[:shift]:
                # Plain AdamW also completes the step budget: it is the same-lr reference.
                self.run(method, self.lrs[method.name], seed, "eval",
                         max_steps=int(self.budget * self.cfg.max_steps_factor),
                         min_steps=self.budget if method.name == "adamw" else 0,
                         min_time=equal, time_cap=equal * self.cfg.time_cap_factor,
                         stop_at=target)
            for lr in self._reference_lrs():
                self.run(METHODS["adamw"], lr, seed, "ref", max_steps=self.budget)

    def _reference_lrs(self) -> list[float]:
        """Learning rates some method uses that no AdamW eval run covers (same-lr reference)."""
        covered = {self.lrs.get("adamw-tuned")}
        if any(m.name == "adamw" for m in self.methods):
            covered.add(self.workload.default_lr)
        return sorted({lr for name, lr in self.lrs.items() if lr not in covered})
