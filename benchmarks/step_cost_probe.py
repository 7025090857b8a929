"""Where does the default's step spend its time beyond Lookahead's, on a tiny model?

The evidence behind benchmarks/RESULTS.md, "Against the peers": on tabular-fullbatch (a
193-parameter MLP, one full batch) the default needs about as many steps as Lookahead but
each costs more. This probe splits that cost. Fresh runs of four rows train one after
another in a shuffled order each round, on one thread, from the same initial weights, at
the lr the published run tuned for the default:

- ``adamw``: plain AdamW (forward, backward, optimizer step);
- ``lookahead``: the benchmark's Lookahead over AdamW (k=5, alpha=0.5);
- ``default``: ``HybridTrainer`` with ``HybridConfig()``, as the benchmark's ``hybrid-jumps``
  row runs it (monitor off; on a full-batch workload told so);
- ``default-no-jumps``: the same with ``jump_every=0``.

Inside the default's runs it also times the gradient check (the check that keeps a NaN/Inf
gradient out of the optimizer's moments: the gradient norm on the warm-up's steps and every
``grad_norm_every``-th step after it, a fused NaN/Inf pass on the others). Each run makes a
few steps untimed, then ``--steps`` timed ones. Printed: the median microseconds per step of
every row, and the default's extra cost split into the gradient check, the jumps (the undo
copy, the RNG capture, the redone forward of an undone jump and, on a workload that is not
full-batch, the paired checks' forwards, beyond Lookahead's own synchronisation) and the
rest of the trainer's bookkeeping. Run:
``python -m benchmarks.step_cost_probe`` (under a minute on two cores); ``--workload``,
``--runs``, ``--steps``, ``--threads`` change the setting. ``--warm-steps 0`` times each run
from its first step, as the benchmark times a run: the default's one-off costs then count too (setting up
the slow weights at the first step, the first restore point at the end of the warm-up).
"""
from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

import torch

from .jump_probe import published_lr
from .methods import METHODS, HybridRunner
from .workloads import WORKLOADS, load_or_skip

ROWS = ("adamw", "lookahead", "default", "default-no-jumps")
WARM_STEPS = 3


def _runner(row: str, workload: Any, model: torch.nn.Module, lr: float, seed: int) -> Any:
    if row == "adamw":
        return METHODS["adamw-tuned"].make(workload, model, lr, seed)
    if row == "lookahead":
        return METHODS["lookahead"].make(workload, model, lr, seed)
    if row == "default":
        return METHODS["hybrid-jumps"].make(workload, model, lr, seed)
    return HybridRunner(workload, model, lr, seed, "continuation",
                        {"segments": False, "jump_every": 0})


class _Timed:
    """Wraps a callable and adds up the wall time spent inside it."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self) -> Any:
        t = time.perf_counter()
        try:
            return self.fn()
        finally:
            self.seconds += time.perf_counter() - t


def measure(workload: str = "tabular-fullbatch", runs: int = 200, steps: int = 40,
            lr: float | None = None, seed: int = 0,
            warm_steps: int = WARM_STEPS) -> dict[str, float]:
    """Median microseconds per step of each row, plus ``grad_norm_check`` (the time inside
    the default's gradient check per step: the norm, or the fused NaN/Inf pass on the steps
    between norms). Each run first makes ``warm_steps`` untimed steps, then ``steps`` timed
    ones."""
    wl = WORKLOADS[workload]
    data, why = load_or_skip(wl)
    if data is None:
        raise SystemExit(f"{workload}: {why}")
    lr = published_lr(workload, "hybrid-jumps") if lr is None else lr
    order = random.Random(seed)
    per_step: dict[str, list[float]] = {row: [] for row in (*ROWS, "grad_norm_check")}
    for run in range(runs):
        rows = list(ROWS)
        order.shuffle(rows)
        for row in rows:
            model = wl.model(data, init_seed=run)
            runner = _runner(row, wl, model, lr, run)
            batches = wl.batches(data, run)
            timed: list[_Timed] = []
            if row == "default":
                flat = runner.trainer.flat   # the norm, and the NaN/Inf pass between norms
                timed = [_Timed(flat.grad_norm), _Timed(flat.grads_finite)]
                flat.grad_norm, flat.grads_finite = timed
            for _ in range(warm_steps):
                runner.step(*next(batches))
            batch = [next(batches) for _ in range(steps)]
            for tm in timed:
                tm.seconds = 0.0
            t = time.perf_counter()
            for x, y in batch:
                runner.step(x, y)
            per_step[row].append((time.perf_counter() - t) / steps * 1e6)
            if timed:
                per_step["grad_norm_check"].append(
                    sum(tm.seconds for tm in timed) / steps * 1e6)
            runner.stats()
    return {row: statistics.median(v) for row, v in per_step.items()}


def split(us: dict[str, float]) -> dict[str, float]:
    """The default's extra cost per step over Lookahead, in parts (microseconds)."""
    extra = us["default"] - us["lookahead"]
    jumps = (us["default"] - us["default-no-jumps"]) - (us["lookahead"] - us["adamw"])
    return {"extra": extra, "grad_norm_check": us["grad_norm_check"], "jumps": jumps,
            "rest": extra - us["grad_norm_check"] - jumps}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="tabular-fullbatch")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--warm-steps", type=int, default=WARM_STEPS,
                    help="untimed steps at the start of each run (0: time from the first)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the bookkeeping is serial, and so is the "
                         "noise; the benchmark runs 2)")
    args = ap.parse_args(argv)
    for name, value, least in (("--runs", args.runs, 1), ("--steps", args.steps, 1),
                               ("--warm-steps", args.warm_steps, 0),
                               ("--threads", args.threads, 1)):
        if value < least:
            ap.error(f"{name} is {value}; give at least {least}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        us = measure(args.workload, args.runs, args.steps, args.lr,
                     warm_steps=args.warm_steps)
    finally:
        torch.set_num_threads(threads)
    parts = split(us)
    print(f"{args.workload}: median us per step over {args.runs} runs of {args.steps} steps "
          f"after {args.warm_steps} untimed ({args.threads} thread"
          f"{'s' if args.threads > 1 else ''})")
    for row in ROWS:
        print(f"  {row:18s} {us[row]:8.1f}")
    print(f"  default - lookahead {parts['extra']:+8.1f} "
          f"({100 * parts['extra'] / us['lookahead']:.1f}% of Lookahead's step): "
          f"gradient check {parts['grad_norm_check']:.1f}, jumps beyond Lookahead's "
          f"{parts['jumps']:.1f}, rest of the bookkeeping {parts['rest']:.1f}")


if __name__ == "__main__":
    main()
