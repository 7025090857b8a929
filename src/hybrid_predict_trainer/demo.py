"""The demo: one real model trained two ways in one process, side by side.

MLP 784-256-10 on 5,000 real MNIST digits (4,000 train / 1,000 validation), AdamW, a cosine
learning-rate schedule, batch 128. First plain AdamW, then ``HybridTrainer``, with the same
initial weights and the same batch order. Both are warmed up (untimed) before the timed runs,
and evaluation is outside the timed region.
"""
from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from .config import HybridConfig
from .data import load_mnist5k
from .trainer import HybridTrainer


@dataclass(frozen=True)
class DemoSettings:
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 1


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                               torch.nn.Linear(256, 10))


def _split(seed: int) -> tuple[torch.Tensor, ...]:
    x, y = load_mnist5k()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def _batches(x: torch.Tensor, y: torch.Tensor, s: DemoSettings
             ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(s.seed + 1)
    n = x.shape[0]
    for _ in range(s.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - s.batch_size + 1, s.batch_size):
            idx = perm[i:i + s.batch_size]
            yield x[idx], y[idx]


def _evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        out = model(x)
        return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


def _schedule(opt: torch.optim.Optimizer, total: int) -> Callable[[int], None]:
    base = [g["lr"] for g in opt.param_groups]

    def set_lr(step: int) -> None:
        f = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * (0.05 + 0.95 * f)
    return set_lr


def demo_config() -> HybridConfig:
    """The hybrid settings the demo uses (the library defaults, monitor on)."""
    return HybridConfig()


def run_demo(settings: DemoSettings | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train both ways and return the comparison (the ``hpt demo --json`` schema)."""
    s = settings or DemoSettings()
    torch.set_num_threads(s.threads)
    say = progress or (lambda _msg: None)
    xtr, ytr, xva, yva = _split(s.seed)
    steps_total = s.epochs * (xtr.shape[0] // s.batch_size)

    def baseline() -> tuple[torch.nn.Module, float, int]:
        model = _model(s.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        set_lr = _schedule(opt, steps_total)
        backward = 0
        t0 = time.perf_counter()
        for step, (xb, yb) in enumerate(_batches(xtr, ytr, s)):
            set_lr(step)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            backward += 1
            opt.step()
        return model, time.perf_counter() - t0, backward

    def hybrid() -> tuple[torch.nn.Module, float, HybridTrainer]:
        model = _model(s.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        set_lr = _schedule(opt, steps_total)
        trainer = HybridTrainer(model, opt, demo_config())
        t0 = time.perf_counter()
        for step, (xb, yb) in enumerate(_batches(xtr, ytr, s)):
            set_lr(step)
            trainer.step(lambda: F.cross_entropy(model(xb), yb))
        wall = time.perf_counter() - t0
        trainer.close()
        return model, wall, trainer

    say("warming up (untimed)")
    _warm(xtr, ytr)
    say(f"plain AdamW: {s.epochs} epochs, {steps_total} steps")
    m_base, t_base, bwd_base = baseline()
    loss_b, acc_b = _evaluate(m_base, xva, yva)
    say("hybrid trainer: same initial weights, same batch order")
    m_hyb, t_hyb, trainer = hybrid()
    loss_h, acc_h = _evaluate(m_hyb, xva, yva)
    summ = trainer.summary()
    return {
        "workload": "mnist5k-mlp-784-256-10",
        "settings": s.__dict__,
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": s.threads, "cpus": os.cpu_count()},
        "baseline": {"wall_s": t_base, "backward_passes": bwd_base, "val_loss": loss_b,
                     "val_accuracy": acc_b},
        "hybrid": {"wall_s": t_hyb, "backward_passes": summ["backward_passes"],
                   "predicted_steps": summ["predicted_steps"], "rollbacks": summ["rollbacks"],
                   "val_loss": loss_h, "val_accuracy": acc_h,
                   "accepted_steps": summ["accepted_steps"], "segments": summ["segments"],
                   "overhead_per_step_ms": summ["overhead_per_step_ms"],
                   "auto_off": summ["auto_off"],
                   "never_predicted_reason": summ["never_predicted_reason"],
                   "health": trainer.monitor.report() if trainer.monitor is not None else None},
        "speedup_wall": t_base / t_hyb if t_hyb > 0 else float("nan"),
        "quality_ratio": loss_h / loss_b if loss_b > 0 else float("nan"),
    }


def _warm(x: torch.Tensor, y: torch.Tensor) -> None:
    """A few untimed steps so the first timed run does not pay for allocator/thread start-up."""
    model = _model(123)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for i in range(20):
        xb, yb = x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
