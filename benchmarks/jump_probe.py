"""How much does a Lookahead jump change the next batch's loss, jump by jump?

The evidence behind the jump check's defaults (docs/design.md). Each workload trains with the
library's jumps kept whatever their check says (``jump_tolerance=1.0``, no pause, every check
paired), so the trajectory is Lookahead's, and every paired check still reports its number:
``StepResult.components["jump_rise"]``, the batch's loss at the jumped weights relative to the
weights the jump left. Same models, data and batches as ``python -m benchmarks``; the lr is
the one the published run tuned for Lookahead (``--lr`` overrides it).

Printed per workload: the rises of the first four jumps and the median rise of the jumps from
step 40 on, over the seeds (positive: the jump raised the batch's loss). Run:
``python -m benchmarks.jump_probe`` (a few minutes for all four workloads on two cores);
``--workloads``, ``--seeds``, ``--lr`` change the setting.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from .workloads import WORKLOADS, load_or_skip

PUBLISHED = Path(__file__).parent / "results" / "latest.json"
KEEP_EVERY_JUMP = dict(segments=False, monitor=False, jump_tolerance=1.0, auto_off=False,
                       jump_trust=0)


def rises(workload: str, lr: float, seed: int) -> list[tuple[int, float]]:
    """(step, relative rise) of every jump's paired check in one run."""
    from hybrid_predict_trainer import HybridConfig, HybridTrainer

    wl = WORKLOADS[workload]
    data, why = load_or_skip(wl)
    if data is None:
        raise SystemExit(f"{workload}: {why}")
    model = wl.model(data, init_seed=seed)
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=lr),
                            HybridConfig(seed=seed, **KEEP_EVERY_JUMP))
    batches = wl.batches(data, seed)
    out = []
    for _ in range(wl.steps):
        x, y = next(batches)
        r = trainer.step(lambda: wl.loss(model(x), y))
        if "jump_rise" in r.components:
            out.append((r.step, r.components["jump_rise"]))
    return out


def published_lr(workload: str, method: str = "lookahead") -> float:
    """The lr the published benchmark run tuned for ``method`` (by default Lookahead, the
    trajectory probed here)."""
    report = json.loads(PUBLISHED.read_text())
    return float(report["workloads"][workload]["methods"][method]["lr"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="mnist-mlp,tabular-fullbatch,fashion-cnn,"
                    "shakespeare-gpt")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--lr", type=float, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    for name in args.workloads.split(","):
        lr = args.lr if args.lr is not None else published_lr(name)
        runs = [rises(name, lr, seed) for seed in range(args.seeds)]
        first = ["  ".join(f"{100 * r:+.1f}%" for _, r in run[:4]) for run in runs]
        later = [100 * r for run in runs for step, r in run if step >= 40]
        print(f"{name} (lr {lr:g}, {args.seeds} seeds): first four jumps "
              + " | ".join(first)
              + (f"; from step 40: median {statistics.median(later):+.1f}%, "
                 f"{sum(v > 0 for v in later)} of {len(later)} raised the loss" if later else ""))


if __name__ == "__main__":
    main()
