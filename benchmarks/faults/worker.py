"""A training process that the crash scenarios kill with SIGKILL.

``python -m benchmarks.faults.worker --path CK --steps T --every N [--hidden H] [--final OUT]``

Resumes from ``CK`` if it exists (the data position is ``trainer.stats.steps``), trains to
step ``T``, and saves ``CK`` after every ``N`` steps. Around each save it prints
``B <steps> <time>`` and ``E <steps> <time>`` (flushed), so the parent can aim its kill into
a save. At the end it writes the final flat weights to ``OUT`` and prints ``DONE``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402


def build(hidden: int):
    """Model, optimizer, trainer and batches shared by the worker and the parent's replay."""
    from .workload import Workload
    wl = Workload(steps=0, hidden=hidden)
    return wl.build()


def batches(steps: int):
    from .workload import batch_list, mnist_split
    xtr, ytr, _, _ = mnist_split()
    return batch_list(xtr, ytr, steps)


def closure_for(model: torch.nn.Module, batch):
    import torch.nn.functional as F
    xb, yb = batch
    return lambda: F.cross_entropy(model(xb), yb)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.faults.worker")
    p.add_argument("--path", type=Path, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--final", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import warnings
    warnings.simplefilter("ignore")
    model, _opt, trainer = build(args.hidden)
    data = batches(args.steps)
    if args.path.exists():
        trainer.load(args.path)
    print(f"S {trainer.stats.steps} {time.time():.6f}", flush=True)
    while trainer.stats.steps < args.steps:
        trainer.step(closure_for(model, data[trainer.stats.steps]))
        n = trainer.stats.steps
        if n % args.every == 0:
            print(f"B {n} {time.time():.6f}", flush=True)
            trainer.save(args.path)
            print(f"E {n} {time.time():.6f}", flush=True)
    if args.final is not None:
        torch.save(trainer.flat.flatten(), args.final)
    print("DONE", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
