"""Does a small learned update predictor (weight nowcasting) pay on these budgets?

The published peers that predict weights well learn the predictor: WNN (Jang et al., 2023)
and NiNo (Knyazev et al., 2025) train a small network on the weight trajectories of other
tasks and jump the weights to its forecast every so often. This probe measures that idea in
its simplest faithful form before any of it goes into the trainer:

- **The nowcaster** is one per-parameter MLP (4 -> 32 -> 32 -> 1). Its input is a
  parameter's last four changes over 5-step intervals, divided by their mean magnitude; its
  output is the change over the next two intervals (10 steps) in the same unit. Scale-free
  inputs let one small net serve every layer of every model.
- **Meta-training** uses AdamW trajectories of tasks disjoint from the benchmark's:
  scikit-learn's 8x8 digits (an MLP and a small CNN), its breast-cancer table (an MLP), and a
  char transformer on Python's own library source. Seeds 0-1 train it, seed 2 is held out.
- **On the benchmark workloads** (their models, data and batches, AdamW at the lr the
  benchmark tuned for it), the weights jump to ``w + forecast`` every ``--every`` steps,
  unchecked or checked the way the trainer checks its jumps (kept only if a fresh batch's
  loss did not rise; the check batches come from a separate stream so every variant sees the
  same training batches). Plain linear extrapolation (the mean change, two intervals on) runs
  the same way for comparison.

Printed: the nowcaster's fit on the held-out trajectories against predicting no change and
against linear extrapolation, then per workload and variant the steps to the AdamW run's
final validation loss + 0.5% and the final validation loss. Run:
``python -m benchmarks.nowcast_probe`` (about 6 minutes); ``--workloads``, ``--seeds`` and
``--every`` change the setting.
"""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import median
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from .jump_probe import published_lr
from .workloads import WORKLOADS, CharGPT, Data, epoch_batches, load_or_skip

INTERVAL = 5     # steps between two recorded weights
HISTORY = 4      # changes the nowcaster reads
AHEAD = 2        # intervals it forecasts
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def features(snaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The nowcaster's input from the last ``HISTORY + 1`` recorded weights (rows of
    ``snaps``): each parameter's changes over the intervals, divided by their mean
    magnitude, as (params, HISTORY); and that magnitude, to turn a forecast back into weights."""
    deltas = snaps[1:] - snaps[:-1]
    scale = deltas.abs().mean(0) + 1e-12
    return (deltas / scale).T.contiguous(), scale


def nowcaster() -> nn.Module:
    return nn.Sequential(nn.Linear(HISTORY, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(),
                         nn.Linear(32, 1))


def record(model: nn.Module, lr: float, batches: Batches, loss: LossFn,
           steps: int) -> torch.Tensor:
    """AdamW's weights every ``INTERVAL`` steps, one row each (the first row: the start)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rows = [parameters_to_vector(model.parameters()).detach().clone()]
    for s in range(1, steps + 1):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        opt.step()
        if s % INTERVAL == 0:
            rows.append(parameters_to_vector(model.parameters()).detach().clone())
    return torch.stack(rows)


def samples(traj: torch.Tensor, per_point: int, gen: torch.Generator
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) pairs at every point of a trajectory with enough history and future,
    ``per_point`` parameters drawn at each; targets clipped at 30 units."""
    xs, ys = [], []
    for i in range(HISTORY, len(traj) - AHEAD):
        x, scale = features(traj[i - HISTORY:i + 1])
        y = ((traj[i + AHEAD] - traj[i]) / scale).clamp(-30.0, 30.0)
        idx = torch.randint(0, traj.shape[1], (min(per_point, traj.shape[1]),), generator=gen)
        xs.append(x[idx])
        ys.append(y[idx])
    return torch.cat(xs), torch.cat(ys)


def _epochs(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int) -> Batches:
    """The benchmark's own seeded epochs over a pair of tensors."""
    return epoch_batches(Data(x, y, x[:0], y[:0]), seed, batch)


def _python_text() -> torch.Tensor | None:
    """ASCII codes of the standard library's own source (None if it ships only bytecode)."""
    files = sorted(Path(os.__file__).parent.glob("*.py"))[:60]
    text = "".join(f.read_text(encoding="utf-8", errors="ignore") for f in files)
    codes = text.encode("ascii", "ignore")
    return torch.tensor(list(codes), dtype=torch.long) if len(codes) > 100_000 else None


def meta_trajectories(seed: int, steps: int = 300) -> list[torch.Tensor]:
    """AdamW trajectories of the disjoint tasks for one seed, at three lrs."""
    from sklearn.datasets import load_breast_cancer, load_digits

    digits = load_digits()
    xd = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    yd = torch.tensor(digits.target)
    table = load_breast_cancer()
    xb = torch.tensor(table.data, dtype=torch.float32)
    xb = (xb - xb.mean(0)) / xb.std(0)
    yb = torch.tensor(table.target)
    builders: list[tuple[Callable[[], nn.Module], torch.Tensor, torch.Tensor]] = [
        (lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), xd, yd),
        (lambda: nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3), nn.ReLU(),
                               nn.Flatten(), nn.Linear(16 * 36, 10)), xd, yd),
        (lambda: nn.Sequential(nn.Linear(30, 32), nn.Tanh(), nn.Linear(32, 2)), xb, yb),
    ]
    out = []
    for lr in (2e-3, 5e-3, 1e-2):
        for build, x, y in builders:
            torch.manual_seed(seed)
            out.append(record(build(), lr, _epochs(x, y, 64, seed), F.cross_entropy, steps))
    text = _python_text()
    if text is not None:
        def windows() -> Batches:
            gen, offsets = torch.Generator().manual_seed(seed), torch.arange(128)
            while True:
                idx = torch.randint(0, len(text) - 130, (32, 1), generator=gen) + offsets
                yield text[idx], text[idx + 1]

        def seq_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

        torch.manual_seed(seed)
        out.append(record(CharGPT(128), 4e-3 * (1 + seed % 2), windows(), seq_loss, steps // 2))
    return out


def fit(x: torch.Tensor, y: torch.Tensor, iters: int = 3000, seed: int = 0) -> nn.Module:
    """Train the nowcaster on (input, target) pairs (Huber loss: the targets are heavy-tailed)."""
    torch.manual_seed(seed)
    net = nowcaster()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for (xb, yb), _ in zip(_epochs(x, y, min(8192, len(x)), seed), range(iters)):
        loss = F.huber_loss(net(xb).squeeze(1), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net.eval()


@torch.no_grad()
def fit_report(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Held-out Huber loss of the nowcaster, of predicting no change, and of linear
    extrapolation (the mean change, ``AHEAD`` intervals on)."""
    return {"zero": float(F.huber_loss(torch.zeros_like(y), y)),
            "linear": float(F.huber_loss(x.mean(1) * AHEAD, y)),
            "nowcaster": float(F.huber_loss(net(x).squeeze(1), y))}


def run_variant(workload: str, lr: float, seed: int, variant: str, net: nn.Module,
                every: int) -> dict[str, Any]:
    """One AdamW run of a benchmark workload with forecast jumps every ``every`` steps.
    ``variant``: 'adamw' (none), 'nowcast' / 'linear' (unchecked), or either + '-checked'."""
    wl = WORKLOADS[workload]
    data, _ = load_or_skip(wl)
    assert data is not None, f"{workload}: data not installed"
    model = wl.model(data, init_seed=seed)
    torch.manual_seed(seed)
    batches, checks = wl.batches(data, seed), wl.batches(data, seed + 1000)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    params = list(model.parameters())
    snaps = [parameters_to_vector(params).detach().clone()]
    curve, jumps, undone = [], 0, 0
    for s in range(1, wl.steps + 1):
        x, y = next(batches)
        opt.zero_grad(set_to_none=True)
        wl.loss(model(x), y).backward()
        opt.step()
        if s % INTERVAL == 0:
            snaps = (snaps + [parameters_to_vector(params).detach().clone()])[-(HISTORY + 1):]
            if variant != "adamw" and s % every == 0 and len(snaps) == HISTORY + 1:
                jumps += 1
                undone += _jump(model, wl, net, snaps, variant, checks)
                snaps[-1] = parameters_to_vector(params).detach().clone()
        if s % wl.eval_every == 0:
            curve.append(wl.evaluate(model, data))
    return {"curve": curve, "jumps": jumps, "undone": undone}


@torch.no_grad()
def _jump(model: nn.Module, wl: Any, net: nn.Module, snaps: list[torch.Tensor],
          variant: str, checks: Batches) -> int:
    """Move the weights to the forecast; returns 1 if the check undid the jump."""
    params = list(model.parameters())
    x, scale = features(torch.stack(snaps))
    step = net(x).squeeze(1) if variant.startswith("nowcast") else x.mean(1) * AHEAD
    here, there = snaps[-1], snaps[-1] + step * scale
    if not variant.endswith("-checked"):
        vector_to_parameters(there, params)
        return 0
    cx, cy = next(checks)
    before = float(wl.loss(model(cx), cy))
    vector_to_parameters(there, params)
    if float(wl.loss(model(cx), cy)) > before:
        vector_to_parameters(here, params)
        return 1
    return 0


VARIANTS = ("adamw", "nowcast", "nowcast-checked", "linear", "linear-checked")


def compare(workload: str, lr: float, seeds: int, net: nn.Module,
            every: int) -> dict[str, dict[str, Any]]:
    """Per variant: median steps to the same seed's AdamW final loss + 0.5% (None when a
    seed never reaches it), seeds that reached it, median final loss, jumps and undone."""
    wl = WORKLOADS[workload]
    runs = {v: [run_variant(workload, lr, s, v, net, every) for s in range(seeds)]
            for v in VARIANTS}
    rows = {}
    for v, per_seed in runs.items():
        steps = []
        for base, run in zip(runs["adamw"], per_seed):
            target = base["curve"][-1] * 1.005
            hit = next((i for i, val in enumerate(run["curve"]) if val <= target), None)
            steps.append(None if hit is None else (hit + 1) * wl.eval_every)
        reached = [s for s in steps if s is not None]
        rows[v] = {"steps_to_target": median(reached) if len(reached) == seeds else None,
                   "reached": f"{len(reached)}/{seeds}",
                   "final_val_loss": median(r["curve"][-1] for r in per_seed),
                   "jumps": sum(r["jumps"] for r in per_seed),
                   "undone": sum(r["undone"] for r in per_seed)}
    return rows


def _tuned_lr(workload: str) -> float:
    """The lr the published benchmark tuned for AdamW (the workload's default without one)."""
    try:
        return published_lr(workload, "adamw-tuned")
    except (OSError, KeyError, ValueError, TypeError):
        return WORKLOADS[workload].default_lr


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="mnist-mlp,fashion-cnn,shakespeare-gpt,"
                    "tabular-fullbatch")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--every", type=int, default=10, help="steps between forecast jumps "
                    f"(a multiple of {INTERVAL})")
    ap.add_argument("--out", default="benchmarks/results/nowcast_probe")
    args = ap.parse_args(argv)
    if args.every % INTERVAL:
        ap.error(f"--every must be a multiple of {INTERVAL}, got {args.every}")
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    train = [samples(t, 4000, gen) for seed in (0, 1) for t in meta_trajectories(seed)]
    held = [samples(t, 4000, gen) for t in meta_trajectories(2)]
    net = fit(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]))
    quality = fit_report(net, torch.cat([x for x, _ in held]), torch.cat([y for _, y in held]))
    lines = ["# A learned nowcaster on the benchmark workloads", "",
             "Held-out fit (Huber loss, forecast units): "
             + ", ".join(f"{k} {v:.3f}" for k, v in quality.items()), "",
             (f"AdamW at each workload's tuned lr, forecast jumps every {args.every} steps, "
              f"{args.seeds} seeds; steps to the AdamW run's final validation loss + 0.5%."),
             "",
             ("| workload | variant | steps to target | reached | final val loss | jumps "
              "undone |"),
             "|---|---|---|---|---|---|"]
    result: dict[str, Any] = {"fit": quality, "every": args.every, "seeds": args.seeds,
                              "workloads": {}}
    for name in args.workloads.split(","):
        if load_or_skip(WORKLOADS[name])[0] is None:
            lines.append(f"| {name} | skipped: data not installed | | | | |")
            continue
        lr = _tuned_lr(name)
        rows = compare(name, lr, args.seeds, net, args.every)
        result["workloads"][name] = {"lr": lr, "variants": rows}
        for v, r in rows.items():
            jumps = f"{r['undone']}/{r['jumps']}" if r["jumps"] else "-"
            lines.append(f"| {name} | {v} | {r['steps_to_target'] or 'not reached'} | "
                         f"{r['reached']} | {r['final_val_loss']:.4f} | {jumps} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(result, indent=1))
    (out / "probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
