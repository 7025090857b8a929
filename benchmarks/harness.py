"""Runs methods over one workload: tuning on its own seed, then timed seeds, side by side.

What is timed, and why:
- Only the method's ``step`` call is inside the stopwatch. Fetching the (already in-memory)
  batch and evaluating on the validation subset are outside it, so evaluation frequency
  never changes a method's time.
- Every method of a seed starts from the same initial weights and draws the same batches.
- The timed runs of a seed advance in lock-step, one step of each method in turn
  (:func:`run_group`), so a drift in the machine's speed hits every method alike. The order
  inside a round is shuffled every round. ``adamw-tuned``'s training time over the step
  budget is the wall time every other method gets (so "quality at equal wall time" is exact).
- Each group records the CPU cores other processes used (``sysload``); a group above the
  threshold is repeated and the least-disturbed attempt kept.
- Peak memory comes from each method's warm-up run, made alone.
"""
from __future__ import annotations

import gc
import math
import random
import time
import traceback
from functools import partial
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from . import sysload
from .analysis import crossing, final_loss, smoothed, tail_mean, target_loss
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
    short_tune_s: float = 1.0         # a tuning run that reaches its target sooner is timed
    tune_repeats: int = 3             # this many times (median): one run of a few
    #                                   milliseconds is at the mercy of timing noise
    tune_extend: int = 0              # a method whose best lr lies at the grid's edge tries
    #                                   up to this many doublings (halvings) beyond it
    short_eval_s: float = 1.0         # a seed whose baseline trains for less is timed
    eval_repeats: int = 3             # this many times; each method's median-timed run counts


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
    jumps_kept_steps: list[int] = field(default_factory=list)     # steps that checked a jump
    jumps_undone_steps: list[int] = field(default_factory=list)

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


@dataclass
class Spec:
    """One run to make: the method, its lr and its stopping rules (see :func:`run_group`).

    Mutable on purpose: the harness sets the others' rules (target, equal time, time cap)
    once the baseline of their seed has finished, while they keep stepping beside it.
    """

    method: Method
    lr: float
    role: str
    max_steps: int
    time_cap: float | None = None
    stop_at: float | None = None
    min_time: float = 0.0
    min_steps: int = 0


@dataclass
class _Live:
    """A run in progress: its model, runner, batch stream and result so far."""

    spec: Spec
    res: RunResult
    model: Any = None
    runner: Any = None
    batches: Any = None
    v0: float = math.nan
    done: bool = False


def _start(workload: Workload, data: Data, spec: Spec, seed: int) -> _Live:
    live = _Live(spec, RunResult(workload.name, spec.method.name, spec.lr, seed, spec.role))
    try:
        live.model = workload.model(data, init_seed=seed)
        live.batches = workload.batches(data, seed)
        live.runner = spec.method.make(workload, live.model, spec.lr, seed)
        t0 = time.perf_counter()
        live.v0 = workload.evaluate(live.model, data)
        live.res.eval_time_s += time.perf_counter() - t0
        live.res.points.append((0, 0.0, 0, 0, live.v0))
    except Exception as exc:  # noqa: BLE001 - one broken method must not end the benchmark
        _fail(live, exc)
    return live


def _fail(live: _Live, exc: BaseException) -> None:
    live.res.stopped, live.done = "error", True
    live.res.error = f"{type(exc).__name__}: {exc}"
    live.res.stats = {"traceback": traceback.format_exc(limit=4)}


def _advance(workload: Workload, data: Data, live: _Live) -> None:
    """One timed step of one run, then its evaluation and stopping rules when due."""
    res, spec = live.res, live.spec
    try:
        x, y = next(live.batches)
        t0 = time.perf_counter()
        rec = live.runner.step(x, y)
        res.train_time_s += time.perf_counter() - t0
        step = res.steps = res.steps + 1
        res.backward_passes += rec.backward
        res.predicted_steps += rec.predicted
        if spec.method.hybrid:
            _append_phase(res.timeline, rec.phase)
            if rec.rolled_back:
                res.rollback_steps.append(step)
            if rec.jumped is not None:
                (res.jumps_kept_steps if rec.jumped else res.jumps_undone_steps).append(step)
        if step % workload.eval_every and step != spec.max_steps:
            return
        t0 = time.perf_counter()
        val = workload.evaluate(live.model, data)
        res.eval_time_s += time.perf_counter() - t0
        res.points.append((step, res.train_time_s, res.backward_passes, res.predicted_steps, val))
        if not math.isfinite(val) or val > 3.0 * live.v0:
            res.stopped = "diverged"
        elif (spec.stop_at is not None and smoothed(res.points)[-1][4] <= spec.stop_at
              and res.train_time_s >= spec.min_time and step >= spec.min_steps):
            res.stopped = "target"
        elif spec.time_cap is not None and res.train_time_s >= spec.time_cap:
            res.stopped = "time"
        elif step < spec.max_steps:
            return
        live.done = True
    except Exception as exc:  # noqa: BLE001
        _fail(live, exc)


def _finish(workload: Workload, data: Data, live: _Live) -> None:
    res = live.res
    if res.error is not None:
        return
    try:
        res.stats = live.runner.stats()
        if res.role == "eval" and res.method == "adamw-tuned":
            res.stats["val_rel_se"] = workload.val_relative_se(live.model, data)
    except Exception as exc:  # noqa: BLE001
        _fail(live, exc)


def run_group(workload: Workload, data: Data, specs: list[Spec], seed: int, *,
              on_done: Callable[[RunResult], None] | None = None) -> list[RunResult]:
    """Train several methods side by side, in lock-step: one step of each per round, in an
    order shuffled every round (seeded by ``seed``, so a group made again repeats it).

    Why lock-step: the reference machine's speed drifts by 10-20% over minutes with no other
    process to blame (identical trajectories measured 113-152 ms a step in runs a minute
    apart). Runs made one after another inherit that drift as noise in their ratios; runs
    advanced step by step share it, so their ratio is what the methods cost. Every run starts
    from the seed's initial weights and draws the seed's batches from its own stream.

    Each run stops at ``max_steps``; or at the first evaluation after ``time_cap`` seconds of
    training time; or once its smoothed validation loss (``analysis.smoothed``) is at or below
    ``stop_at`` with at least ``min_time`` seconds and ``min_steps`` steps trained; or when the
    validation loss is non-finite or above three times its initial value (diverged).
    ``on_done`` sees each finished run while the others go on (and may change their specs).
    Peak memory is process-wide, so it is recorded only for a group of one.
    """
    gc.collect()
    torch.manual_seed(seed)
    alone = len(specs) == 1
    if alone:
        sysload.reset_peak_rss()
    start_rss = sysload.rss_mb()
    meter = sysload.LoadMeter()
    meter.start()
    lives = [_start(workload, data, spec, seed) for spec in specs]
    # A fixed order would put each method right after the same other one every round, and a
    # step finds the caches as its predecessor left them: two rows with the same trajectory
    # came out 1-4% apart in time per step, always the same way round; shuffled, the two
    # were level in the first run made so.
    order = random.Random(seed)
    reported: set[int] = set()
    while True:
        for i, live in enumerate(lives):
            if live.done and i not in reported:
                reported.add(i)
                _finish(workload, data, live)
                if on_done is not None:
                    on_done(live.res)
        active = [live for live in lives if not live.done]
        if not active:
            break
        order.shuffle(active)
        for live in active:
            _advance(workload, data, live)
    load = meter.stop()
    for live in lives:
        live.res.other_cores = load["other_cores"]
        if alone:
            live.res.start_rss_mb, live.res.peak_rss_mb = start_rss, sysload.peak_rss_mb()
    return [live.res for live in lives]


def run_once(workload: Workload, data: Data, method: Method, lr: float, seed: int, *,
             role: str, max_steps: int, time_cap: float | None = None,
             stop_at: float | None = None, min_time: float = 0.0,
             min_steps: int = 0) -> RunResult:
    """Train one method alone (a group of one; see :func:`run_group` for the rules)."""
    spec = Spec(method, lr, role, max_steps, time_cap, stop_at, min_time, min_steps)
    return run_group(workload, data, [spec], seed)[0]


def beyond_edge(best: float, tried: list[float]) -> float | None:
    """The next lr past the edge of ``tried`` where ``best`` lies (twice the highest or half
    the lowest), or None when ``best`` lies inside."""
    if len(tried) < 2:
        return None
    if best >= max(tried):
        return best * 2.0
    if best <= min(tried):
        return best / 2.0
    return None


def tuning_rank(entry: dict[str, Any]) -> tuple[int, float]:
    """Sort key of one lr's tuning result: reached sooner first, then lower loss at the cap
    (a run that failed last)."""
    if "time_to_target_s" in entry:
        return 0, entry["time_to_target_s"]
    loss = entry.get("loss_at_cap")
    return 1, (math.inf if loss is None or not math.isfinite(loss) else loss)


def median_timed(groups: list[list[RunResult]], target: float) -> list[RunResult]:
    """Of several timings of one lock-step group (the same specs, the same seed), each
    run's median-timed attempt, timed by when it reached ``target`` (a run that never did
    sorts last, by its training time).

    Why: on the cheapest workloads a whole run lasts a few hundredths of a second, and two
    rows with the same trajectory once differed by 0.16x in their speed-up through timing
    alone. The trajectories are the same in every attempt, so only the timing is chosen.
    Used by tuning (each lr's time to the tuning target) and by the timed seeds (each
    method's time to the baseline's target)."""
    def key(r: RunResult) -> tuple[float, float]:
        hit = crossing(r.points, target) if r.ok else None
        return (hit[0], 0.0) if hit else (math.inf, r.train_time_s)

    return [sorted(attempts, key=key)[(len(attempts) - 1) // 2] for attempts in zip(*groups)]


def _with_specs(on_done: Callable[[RunResult, list[Spec]], None], specs: list[Spec],
                run: RunResult) -> None:
    on_done(run, specs)


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
        # (start, peak) RSS in MiB of each method's warm-up run, made alone: in a lock-step
        # group the process-wide peak cannot be told apart per method
        self.memory: dict[str, tuple[float | None, float | None]] = {}

    # --- a lock-step group, repeated while another process disturbed it -----------------

    def run_side_by_side(self, specs: list[Spec], seed: int, *,
                         on_done: Callable[[RunResult, list[Spec]], None] | None = None
                         ) -> list[RunResult]:
        """A lock-step group (:func:`run_group`), repeated whole while another process
        disturbed it; the least-disturbed attempt is kept. ``specs`` are copied per attempt,
        so ``on_done`` may change them freely."""
        best: list[RunResult] | None = None
        attempt = 0
        for attempt in range(1, self.cfg.max_repeats + 2):
            fresh = [replace(s) for s in specs]
            hook = None if on_done is None else partial(_with_specs, on_done, fresh)
            group = run_group(self.workload, self.data, fresh, seed, on_done=hook)
            load = group[0].other_cores or 0.0
            flagged = load > self.cfg.load_threshold
            for r in group:
                r.flagged = flagged
            if best is None or load < (best[0].other_cores or 0.0):
                best = group
            if not flagged or any(r.error for r in group) or attempt > self.cfg.max_repeats:
                break
            self.log(f"    repeat: seed {seed} saw {load:.2f} cores of other load")
        assert best is not None
        for r in best:
            r.attempts = attempt
            if r.peak_rss_mb is None and r.method in self.memory:
                r.start_rss_mb, r.peak_rss_mb = self.memory[r.method]
            self.runs.append(r)
            self._log_run(r)
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
        """Untimed steps of every method, alone, so lazy initialisation never lands in a
        timed run; each also gives the method's peak memory (see ``self.memory``)."""
        for method in self.methods:
            r = run_once(self.workload, self.data, method, self.workload.default_lr,
                         WARMUP_SEED, role="warmup", max_steps=self.cfg.warmup_steps)
            self.memory[method.name] = (r.start_rss_mb, r.peak_rss_mb)

    def tune(self) -> None:
        """Pick each method's lr from the grid on the tuning seed (same rules for all).

        Each method's four grid runs train side by side in one lock-step group
        (:meth:`run_side_by_side`): the machine's speed drifts by 10-20% over minutes, and
        runs made one after another once handed a method the wrong lr through that drift
        alone (the same trajectories, 147 ms a step at one lr and 107 ms at the next).

        AdamW's lr is the one with the lowest validation loss at the budget (mean of the last
        three evaluations, to damp one lucky evaluation). Every other method then gets the
        same four runs, each capped at the tuned AdamW run's training time, and keeps the lr
        that reaches that run's target (that same mean + 0.5%) fastest; if none reaches it, the
        lowest loss at the time cap. When a run reaches the target in under ``short_tune_s``,
        the method's group is made ``tune_repeats`` times in all (the same trajectories each
        time) and each lr's median-timed run counts (:func:`median_timed`): on the cheapest
        workload a whole run lasts about 0.03 s, and one disturbed run once cost a method its
        best lr.

        A method (the baseline included) whose best lr is the grid's highest or lowest is not
        really tuned: its best may lie beyond. It then tries the next lr past that edge (twice
        or half the edge lr), side by side with the edge lr, and moves there when it is
        better, up to ``tune_extend`` times (:meth:`_extend`; 0 by default: the grid the
        issue asks for). The report marks an lr at the edge of the lrs tried either way: on
        tabular-fullbatch Lookahead and every hybrid keep the grid's top lr, and twice that lr
        reaches the tuning target sooner (benchmarks/RESULTS.md, "Tuning at the grid's edge").
        """
        grid = [self.workload.default_lr * m for m in LR_GRID]
        default = self.workload.default_lr
        by_name = {m.name: m for m in self.methods}
        adamw = by_name.get("adamw-tuned", METHODS["adamw-tuned"])
        if not self.cfg.tune:
            self.lrs = {m.name: default for m in self.methods}
            self.lrs["adamw-tuned"] = default
            return
        base_runs = dict(zip(grid, self._tune_group(adamw, grid, max_steps=self.budget)))
        scores = {lr: (tail_mean(r.points) if r.ok else math.inf) for lr, r in base_runs.items()}
        best_lr = min(scores, key=lambda lr: scores[lr])

        def try_base(edge: float, nxt: float) -> dict[str, Any]:
            (run,) = self._tune_group(adamw, [nxt], max_steps=self.budget)  # no timing: alone
            base_runs[nxt] = run
            scores[nxt] = tail_mean(run.points) if run.ok else math.inf
            return {"lr": nxt, "edge_lr": edge, "score": scores[nxt],
                    "kept": scores[nxt] < scores[edge]}

        best_lr, extended = self._extend(best_lr, list(grid), try_base)
        base = base_runs[best_lr]
        self.lrs["adamw-tuned"] = best_lr
        self.tuning["adamw-tuned"] = {"criterion": "val loss at budget (mean of last 3 evals)",
                                      "scores": {f"{lr:g}": scores[lr] for lr in grid},
                                      "extended": extended}
        target = target_loss(base.points)
        rules = {"time_cap": base.train_time_s * self.cfg.time_cap_factor, "stop_at": target,
                 "max_steps": int(self.budget * self.cfg.max_steps_factor)}
        for method in self.methods:
            if method.tuned and method.name != "adamw-tuned":
                self._tune_method(method, grid, target, rules)
            elif not method.tuned:
                self.lrs[method.name] = default

    def _tune_group(self, method: Method, grid: list[float], **rules: Any) -> list[RunResult]:
        """One method at every lr of the grid, side by side on the tuning seed."""
        return self.run_side_by_side([Spec(method, lr, "tune", **rules) for lr in grid],
                                     TUNE_SEED)

    def _timed_tuning(self, method: Method, lrs: list[float], target: float,
                      rules: dict[str, Any]) -> tuple[dict[float, dict[str, Any]], int]:
        """Each lr's time to the tuning target (or its loss at the cap), the lrs side by side;
        a group that reaches the target in under ``short_tune_s`` is timed ``tune_repeats``
        times and each lr's median-timed run counts. Returns the table and the repeats."""
        groups = [self._tune_group(method, lrs, **rules)]
        fastest = min((h[0] for r in groups[0] if r.ok
                       for h in [crossing(r.points, target)] if h), default=math.inf)
        if fastest < self.cfg.short_tune_s:
            groups += [self._tune_group(method, lrs, **rules)
                       for _ in range(self.cfg.tune_repeats - 1)]
        table: dict[float, dict[str, Any]] = {}
        for lr, r in zip(lrs, median_timed(groups, target)):
            hit = crossing(r.points, target) if r.ok else None
            table[lr] = ({"time_to_target_s": hit[0]} if hit else
                         {"loss_at_cap": (final_loss(r.points) if r.ok else None)})
        return table, len(groups)

    def _tune_method(self, method: Method, grid: list[float], target: float,
                     rules: dict[str, Any]) -> None:
        """Time to the tuning target at each lr (see :meth:`tune`); keep the fastest."""
        table, repeats = self._timed_tuning(method, grid, target, rules)
        best = min(table, key=lambda lr: tuning_rank(table[lr]))

        def try_pair(edge: float, nxt: float) -> dict[str, Any]:
            # side by side with the edge lr: the two share the machine's drift
            pair, _ = self._timed_tuning(method, [edge, nxt], target, rules)
            return {"lr": nxt, "edge_lr": edge, "edge": pair[edge], "beyond": pair[nxt],
                    "kept": tuning_rank(pair[nxt]) < tuning_rank(pair[edge])}

        best, extended = self._extend(best, list(grid), try_pair)
        self.lrs[method.name] = best
        self.tuning[method.name] = {"criterion": "time to tuning target", "target": target,
                                    "grid": {f"{lr:g}": v for lr, v in table.items()},
                                    "side_by_side": True, "repeats": repeats,
                                    "extended": extended}

    def _extend(self, best: float, tried: list[float],
                trial: Callable[[float, float], dict[str, Any]]
                ) -> tuple[float, list[dict[str, Any]]]:
        """Past the grid's edge while the best lr sits on it, at most ``tune_extend`` times:
        ``trial(edge, next)`` runs the next lr beyond and says whether it is kept. Returns the
        best lr and the trials' entries."""
        extended: list[dict[str, Any]] = []
        for _ in range(self.cfg.tune_extend):
            nxt = beyond_edge(best, tried)
            if nxt is None:
                break
            tried.append(nxt)
            extended.append(trial(best, nxt))
            if not extended[-1]["kept"]:
                break
            best = nxt
        return best, extended

    def evaluate_seeds(self) -> None:
        """The timed runs: for each seed, every method side by side with the baseline.

        The baseline (``adamw-tuned``) trains its step budget; its training time is the wall
        time every other method gets (quality at equal wall time) and its final loss sets the
        target. Until it finishes, the others step beside it with no stopping rule; then each
        trains on until it reaches the target or 1.5x the baseline's time. Plain AdamW and the
        same-lr references complete the step budget. A seed whose baseline trains for less
        than ``short_eval_s`` is timed ``eval_repeats`` times, and each method's
        median-timed run counts (:func:`median_timed`).
        """
        by_name = {m.name: m for m in self.methods}
        base_method = by_name.get("adamw-tuned", METHODS["adamw-tuned"])
        others = [m for m in self.methods if m.name != "adamw-tuned"]
        long = int(self.budget * self.cfg.max_steps_factor)
        for seed in range(self.cfg.seeds):
            self.log(f"  seed {seed}")
            specs = [Spec(base_method, self.lrs["adamw-tuned"], "eval", self.budget)]
            specs += [Spec(m, self.lrs[m.name], "eval", long,
                           min_steps=self.budget if m.name == "adamw" else 0)
                      for m in others]
            specs += [Spec(METHODS["adamw"], lr, "ref", self.budget)
                      for lr in self._reference_lrs()]

            def baseline_done(run: RunResult, group: list[Spec]) -> None:
                if run.method != "adamw-tuned" or run.role != "eval" or not run.ok:
                    return
                equal, target = run.train_time_s, target_loss(run.points)
                for spec in group:
                    if spec.role == "eval" and spec.method.name != "adamw-tuned":
                        spec.stop_at, spec.min_time = target, equal
                        spec.time_cap = equal * self.cfg.time_cap_factor

            group = self.run_side_by_side(specs, seed, on_done=baseline_done)
            if not group[0].ok:
                self.log(f"  seed {seed}: the baseline failed ({group[0].stopped}); seed "
                         "skipped")
                self.runs = [r for r in self.runs if all(r is not g for g in group)]
            elif group[0].train_time_s < self.cfg.short_eval_s and self.cfg.eval_repeats > 1:
                self.log(f"  seed {seed}: the baseline trained {group[0].train_time_s:.2f} s; "
                         f"the group is timed {self.cfg.eval_repeats} times and each "
                         "method's median-timed run counts")
                groups = [group] + [self.run_side_by_side(specs, seed, on_done=baseline_done)
                                    for _ in range(self.cfg.eval_repeats - 1)]
                target = target_loss(group[0].points)
                kept = {id(r) for r in median_timed(groups, target)}
                made = {id(r) for g in groups for r in g}
                self.runs = [r for r in self.runs if id(r) not in made or id(r) in kept]

    def _reference_lrs(self) -> list[float]:
        """Learning rates some method uses that no AdamW eval run covers (same-lr reference)."""
        covered = {self.lrs.get("adamw-tuned")}
        if any(m.name == "adamw" for m in self.methods):
            covered.add(self.workload.default_lr)
        return sorted({lr for name, lr in self.lrs.items() if lr not in covered})
