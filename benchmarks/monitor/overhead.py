"""Per-step cost of the health monitor, measured side by side in one process.

Method: two copies of the same model (same initial weights, same batches) train in
alternating blocks of ``block`` steps, one plain and one under ``watch()``; each block's wall
time / ``block`` is one per-step sample, so the sampled checks (every 10, 25, 50 steps) are
amortised exactly as in a real run. The first blocks (the monitor's warm-up, when gradients are
read every step) are discarded; the report gives the median per-step time of each arm over
the remaining blocks, their ratio, and what each check cost in total. Background load from
other processes is recorded, because it can make a 2-core machine several times slower.

Run from the repository root::

    python -m benchmarks.monitor.overhead [--out benchmarks/results/monitor] [--rounds 30]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybrid_predict_trainer.monitor import watch

from .data import batches, mnist, text
from .healthy_programs import _CharTransformer

Step = Callable[[nn.Module, torch.optim.Optimizer, Any, Any], None]


def _mlp_workload() -> tuple[nn.Module, Callable[[nn.Module], torch.optim.Optimizer],
                             Iterator[Any], str]:
    torch.manual_seed(0)
    x, y = mnist()
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    return (model, lambda m: torch.optim.AdamW(m.parameters(), 1e-3), batches(x, y, 128),
            "MLP 784-256-10 on MNIST-5k, batch 128, AdamW")


def _transformer_workload() -> tuple[nn.Module, Callable[[nn.Module], torch.optim.Optimizer],
                                     Iterator[Any], str]:
    torch.manual_seed(0)
    ids, vocab = text()
    model = _CharTransformer(vocab, d=128, length=64)
    g = torch.Generator().manual_seed(0)

    def data() -> Iterator[Any]:
        while True:
            starts = torch.randint(0, len(ids) - 65, (16,), generator=g)
            yield (torch.stack([ids[s:s + 64] for s in starts]),
                   torch.stack([ids[s + 1:s + 65] for s in starts]))

    return (model, lambda m: torch.optim.AdamW(m.parameters(), 1e-3), data(),
            "char transformer, 2 layers, d128, 4 heads, T=64, batch 16, AdamW")


WORKLOADS = {"mlp": _mlp_workload, "transformer": _transformer_workload}


def _train_block(model: nn.Module, opt: torch.optim.Optimizer, data: list[Any],
                 monitor: Any) -> tuple[float, float]:
    """Seconds per step of one block: wall time, and this thread's CPU time (which other
    processes competing for the cores do not inflate)."""
    t0, c0 = time.perf_counter(), time.thread_time()
    for xb, yb in data:
        out = model(xb)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), yb.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad()
        if monitor is not None:
            monitor.step(loss, outputs=out, targets=yb)
    return ((time.perf_counter() - t0) / len(data), (time.thread_time() - c0) / len(data))


def measure(name: str, rounds: int, block: int, warm_blocks: int,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Interleaved blocks of plain and monitored training on identical models and batches.

    Each round runs one plain and one monitored block back to back (alternating which goes
    first); the round's ratio of the two cancels slow changes of background load. Reported:
    the median ratio over rounds (with its quartiles), each arm's median ms per step, and the
    monitor's own time (measured inside step() and its optimizer hooks) per step.
    """
    model, make_opt, data, description = WORKLOADS[name]()
    plain, watched = model, copy.deepcopy(model)
    opt_p, opt_w = make_opt(plain), make_opt(watched)
    try:
        from benchmarks.sysload import LoadMeter
        meter: Any = LoadMeter()
    except ImportError:  # the shared load meter of benchmarks/ is optional here
        meter = None
    times: dict[str, list[float]] = {"plain": [], "monitor": []}
    cpu: dict[str, list[float]] = {"plain": [], "monitor": []}
    self_s = 0.0
    with watch(watched, opt_w, **(options or {})) as mon:
        for r in range(warm_blocks + rounds):
            if r == warm_blocks:
                self_s = mon.seconds
                if meter is not None:
                    meter.start()
            chunk = [next(data) for _ in range(block)]
            order = ("plain", "monitor") if r % 2 == 0 else ("monitor", "plain")
            for arm in order:
                if arm == "plain":
                    t, c = _train_block(plain, opt_p, chunk, None)
                else:
                    t, c = _train_block(watched, opt_w, chunk, mon)
                if r >= warm_blocks:
                    times[arm].append(t * 1e3)
                    cpu[arm].append(c * 1e3)
        self_s = mon.seconds - self_s
        summary = mon.summary()
    load = meter.stop() if meter is not None else {}
    ratios = sorted(m / p for m, p in zip(times["monitor"], times["plain"]))
    q1, q3 = ratios[len(ratios) // 4], ratios[(3 * len(ratios)) // 4]
    cpu_ratios = sorted(m / p for m, p in zip(cpu["monitor"], cpu["plain"]))
    c1, c3 = cpu_ratios[len(cpu_ratios) // 4], cpu_ratios[(3 * len(cpu_ratios)) // 4]
    med = {arm: statistics.median(v) for arm, v in times.items()}
    steps = (warm_blocks + rounds) * block
    self_ms = 1e3 * self_s / (rounds * block)
    checks = {k: {"runs": v["runs"], "total_ms": round(1e3 * v["seconds"], 3),
                  "ms_per_run": round(1e3 * v["seconds"] / v["runs"], 4) if v["runs"] else None,
                  "ms_per_step": round(1e3 * v["seconds"] / steps, 5)}
              for k, v in summary["checks"].items()}
    return {"workload": name, "description": description, "block_steps": block,
            "rounds": rounds, "plain_ms": round(med["plain"], 4),
            "monitor_ms": round(med["monitor"], 4),
            "overhead_pct": round(100 * (statistics.median(ratios) - 1), 2),
            "overhead_iqr_pct": [round(100 * (q1 - 1), 2), round(100 * (q3 - 1), 2)],
            "cpu_overhead_pct": round(100 * (statistics.median(cpu_ratios) - 1), 2),
            "cpu_overhead_iqr_pct": [round(100 * (c1 - 1), 2), round(100 * (c3 - 1), 2)],
            "monitor_self_ms_per_step": round(self_ms, 5),
            "monitor_self_pct": round(100 * self_ms / med["plain"], 2),
            "plain_blocks_ms": [round(v, 4) for v in times["plain"]],
            "monitor_blocks_ms": [round(v, 4) for v in times["monitor"]],
            "findings": len(summary["findings"]), "checks": checks,
            "other_cores": load.get("other_cores")}


def _markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = ["# Health monitor overhead", "",
             f"Torch {meta['torch']}, {meta['threads']} thread(s), {meta['machine']}. "
             "Per-step time = wall time of a block / its steps. Plain and monitored blocks "
             "run back to back in one process on identical models and batches; the overhead "
             "is the median over rounds of the paired ratio, in wall time and in this thread's "
             "CPU time (which other processes competing for the cores do not inflate). The "
             "monitor's own time is measured inside its step() and optimizer hooks (it leaves "
             "out the gradient-probe hook and the loss-function wrappers, 1-2 us per step).",
             "",
             f"Monitor options: {meta['options'] or 'defaults'}.", "",
             "| workload | plain ms/step | monitored ms/step | overhead, wall time (quartiles) "
             "| overhead, CPU time (quartiles) | monitor's own time per step | other cores "
             "busy |", "|---|---|---|---|---|---|---|"]
    for r in results:
        other = f"{r['other_cores']:.2f}" if r.get("other_cores") is not None else "n/a"
        lo, hi = r["overhead_iqr_pct"]
        clo, chi = r["cpu_overhead_iqr_pct"]
        lines.append(f"| {r['description']} | {r['plain_ms']:.3f} | {r['monitor_ms']:.3f} | "
                     f"{r['overhead_pct']:+.2f}% ({lo:+.1f} .. {hi:+.1f}) | "
                     f"{r['cpu_overhead_pct']:+.2f}% ({clo:+.1f} .. {chi:+.1f}) | "
                     f"{1e3 * r['monitor_self_ms_per_step']:.1f} us "
                     f"({r['monitor_self_pct']:.2f}%) | {other} |")
    for r in results:
        lines += ["", f"## Cost of each check: {r['workload']}", "",
                  "| check | runs | ms per run | ms per step (amortised) |", "|---|---|---|---|"]
        for name, c in r["checks"].items():
            per_run = f"{c['ms_per_run']:.4f}" if c["ms_per_run"] is not None else "-"
            lines.append(f"| {name} | {c['runs']} | {per_run} | {c['ms_per_step']:.5f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/monitor")
    parser.add_argument("--rounds", type=int, default=40, help="measured blocks per arm")
    parser.add_argument("--block", type=int, default=50, help="steps per block (a multiple "
                        "of every sampling interval, so each block holds the same checks)")
    parser.add_argument("--warm-blocks", type=int, default=2)
    parser.add_argument("--workloads", default="mlp,transformer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--options", default="{}", help="monitor options as JSON, e.g. "
                        "'{\"grad_every\": 1}' (default: the default mode)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "options": json.loads(args.options)}
    results = []
    for name in args.workloads.split(","):
        rounds = args.rounds if name == "mlp" else max(4, args.rounds // 4)
        res = measure(name, rounds, args.block, args.warm_blocks, json.loads(args.options))
        print(f"{name}: plain {res['plain_ms']:.3f} ms, monitored {res['monitor_ms']:.3f} ms, "
              f"overhead {res['overhead_pct']:+.2f}% (quartiles {res['overhead_iqr_pct']}), "
              f"CPU-time overhead {res['cpu_overhead_pct']:+.2f}% "
              f"(quartiles {res['cpu_overhead_iqr_pct']}), "
              f"monitor's own time {1e3 * res['monitor_self_ms_per_step']:.1f} us/step "
              f"({res['monitor_self_pct']:.2f}%)")
        results.append(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "results": results}
    (out / "overhead.json").write_text(json.dumps(report, indent=1))
    (out / "overhead.md").write_text(_markdown(results, meta))
    print(f"wrote {out / 'overhead.json'} and {out / 'overhead.md'}")
    return report


if __name__ == "__main__":
    main()
