"""Forwarding the trainer's per-step metrics to your own logger with a hook.

    python examples/custom_logger.py

Every call of ``trainer.step`` hands a ``StepResult`` (step, phase, loss, predicted,
backward, confidence, rolled_back, transition, wall_s, ...) to each hook. ``RunningStats``
adds the running figures a dashboard wants (backward passes saved, speed-up estimate). Here
the "logger" is a CSV file; a wandb/MLflow/TensorBoard call goes in the same place.
"""
from __future__ import annotations

import csv
import sys
from typing import TextIO

import torch
import torch.nn.functional as F

from hybrid_predict_trainer import HybridConfig, HybridTrainer, StepResult
from hybrid_predict_trainer.data import load_mnist5k
from hybrid_predict_trainer.integrations import RunningStats


class CsvLogger:
    """A hook: called with every StepResult."""

    def __init__(self, out: TextIO, stats: RunningStats) -> None:
        self.stats = stats
        self.writer = csv.writer(out)
        self.writer.writerow(["step", "phase", "loss", "predicted", "backward_saved",
                              "speedup_estimate"])

    def __call__(self, r: StepResult) -> None:
        self.writer.writerow([r.step, r.phase.value, "" if r.loss is None else f"{r.loss:.4f}",
                              int(r.predicted), self.stats.backward_saved,
                              f"{self.stats.speedup_estimate:.3f}"])


def main(steps: int = 60, out: TextIO = sys.stdout) -> RunningStats:
    torch.manual_seed(0)
    x, y = load_mnist5k()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm][:steps * 64], y[perm][:steps * 64]
    model = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3),
                            HybridConfig(warmup_steps=10, monitor=False))
    stats = RunningStats()
    trainer.add_hook(stats)                     # first: the logger reads its totals
    trainer.add_hook(CsvLogger(out, stats))
    for i in range(steps):
        xb, yb = x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64]
        trainer.step(lambda: F.cross_entropy(model(xb), yb))
    trainer.close()
    return stats


if __name__ == "__main__":
    main()
