"""Is the average of recent iterates a better point than the iterate? Full validation set.

The evidence behind the ``averaging`` predictor. AdamW trains the benchmark's mnist-mlp
workload (same model, data split and batches as ``python -m benchmarks``) at the lr the
benchmark tuned for Lookahead and hybrid-averaging. At six points of training it scores, on
the 1,000 held-out digits, the iterate ``w`` and candidate points a predicted step could move
to:

- ``ema``: an exponential average of the iterates (decay 0.9, what the predictor jumps onto);
- ``lookahead``: Lookahead's synchronised point, half-way back to the iterate 5 steps ago;
- ``ema + c*v``: the average moved on by c steps of the mean update (long EMA, decay 0.97);
- ``w + c*v``: the iterate moved on by c steps of the mean update (plain continuation).

Printed: each candidate's validation loss relative to the iterate's (negative = better),
averaged over the points and seeds. Run: ``python -m benchmarks.averaging_probe`` (about a
minute); ``--lr`` and ``--seeds`` change the setting.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from .workloads import WORKLOADS


def probe(lr: float, seeds: int, steps: int = 200, points: int = 6) -> dict[str, list[float]]:
    """Relative validation-loss change of every candidate at every probe point."""
    wl = WORKLOADS["mnist-mlp"]
    data = wl.load()
    rel: dict[str, list[float]] = {}
    for seed in range(seeds):
        model = wl.model(data, init_seed=seed)
        torch.manual_seed(seed)
        batches = wl.batches(data, seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        params = list(model.parameters())
        w = parameters_to_vector(params).detach().clone()
        ema, vel, recent = w.clone(), torch.zeros_like(w), [w.clone()]
        for s in range(1, steps + 1):
            x, y = next(batches)
            opt.zero_grad(set_to_none=True)
            wl.loss(model(x), y).backward()
            opt.step()
            new = parameters_to_vector(params).detach().clone()
            u, w = new - w, new
            recent = (recent + [w.clone()])[-6:]
            ema.mul_(0.9).add_(w, alpha=0.1)
            vel.mul_(0.97).add_(u, alpha=0.03)
            if s % (steps // points) or s < 20:
                continue
            base = wl.evaluate(model, data)
            v = vel / (1.0 - 0.97 ** s)
            cands = {"ema": ema, "lookahead": recent[0] + 0.5 * (w - recent[0])}
            for c in (2, 5):
                cands[f"ema + {c}*v"] = ema + c * v
                cands[f"w + {c}*v"] = w + c * v
            for name, point in cands.items():
                vector_to_parameters(point, params)
                rel.setdefault(name, []).append(wl.evaluate(model, data) / base - 1.0)
            vector_to_parameters(w, params)
    return rel


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=0.016)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/averaging_probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rel = probe(args.lr, args.seeds)
    n = len(next(iter(rel.values())))
    lines = [f"# Candidate points vs the iterate (mnist-mlp, AdamW lr {args.lr:g}, "
             f"{args.seeds} seeds, {n} probe points)", "",
             "| candidate | validation loss vs the iterate (mean) | better at |", "|---|---|---|"]
    for name, vals in rel.items():
        better = sum(v < 0 for v in vals)
        lines.append(f"| {name} | {100 * sum(vals) / len(vals):+.1f}% | {better}/{len(vals)} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps({"lr": args.lr, "seeds": args.seeds,
                                                "relative": rel}, indent=1))
    (out / "probe.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
