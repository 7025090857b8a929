"""Command line of the benchmark suite: ``python -m benchmarks [--quick] ...``.

Why the re-exec: OpenMP reads ``OMP_WAIT_POLICY`` once, when torch is loaded. With another
process busy, the default spin-waiting made 2-thread runs 3x slower on the reference machine,
so ``main`` restarts the interpreter with ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set
(``--no-reexec`` keeps the current process, e.g. when called from another program).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REEXEC_FLAG = "HPT_BENCH_REEXEC"


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time-to-target benchmark of the hybrid trainer against tuned AdamW and "
                    "three peers, on real data (nothing is downloaded).")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: mnist-mlp only, one seed, a short budget (about a minute)")
    p.add_argument("--workloads", help="comma-separated subset of: mnist-mlp, fashion-cnn, "
                                       "shakespeare-gpt, tabular-fullbatch")
    p.add_argument("--methods", help="comma-separated subset of the methods "
                                     "(adamw-tuned always runs: it defines the target); the "
                                     "ablations hybrid-alpha-0.6, -0.65, -0.75 and "
                                     "-adapt run only when named here")
    p.add_argument("--seeds", type=int, help="evaluation seeds (default: the workload's, 6 "
                                              "to 21 for the noisy ones; 1 with --quick)")
    p.add_argument("--steps", type=int, help="override every workload's step budget")
    p.add_argument("--out", type=Path, help="results folder (default benchmarks/results/<time>)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: all cores, at most 2, as in the reference)")
    p.add_argument("--load-threshold", type=float, default=0.2,
                   help="cores used by other processes above which a run is repeated")
    p.add_argument("--max-repeats", type=int, default=None,
                   help="extra attempts for a disturbed run (default 2; 0 with --quick)")
    p.add_argument("--tune-extend", type=_non_negative, default=0, metavar="N",
                   help="a method whose best lr lies at the grid's edge tries up to N lrs "
                        "past it, doubling (halving) each time (default 0: the grid only; "
                        "the report marks an lr at the edge either way)")
    p.add_argument("--no-tune", action="store_true",
                   help="skip lr tuning: every method runs at the default lr")
    p.add_argument("--publish", action="store_true",
                   help="also copy the report to benchmarks/RESULTS.md and results/latest.json")
    p.add_argument("--render", type=Path, metavar="FOLDER",
                   help="train nothing: rewrite the report and plots of the run in FOLDER from "
                        "its report.json (after a change to the report's layout); with "
                        "--publish, publish it")
    p.add_argument("--no-reexec", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _maybe_reexec(argv: list[str]) -> None:
    """Replace this process by one with ``OMP_WAIT_POLICY=PASSIVE`` (unless already set)."""
    if os.environ.get("OMP_WAIT_POLICY") or os.environ.get(REEXEC_FLAG):
        return
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", **{REEXEC_FLAG: "1"})
    root = str(BENCH_DIR.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *argv], env)


def machine_info(threads: int) -> dict[str, Any]:
    """What the numbers were measured on (no user names or paths)."""
    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "mem_gib": mem,
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _render(folder: Path, publish: bool) -> int:
    """Re-render a finished run's report from its JSON: same numbers, current layout."""
    import json

    from . import report

    src = folder / "report.json"
    if not src.is_file():
        print(f"--render: {src} not found; pass the folder of a finished run (it holds "
              "report.json), e.g. benchmarks/results/<time>", file=sys.stderr)
        return 2
    files = report.write(json.loads(src.read_text(encoding="utf-8")), folder)
    print(f"wrote {len(files)} files to {folder}")
    if publish:
        report.publish(folder)
        print("published to benchmarks/RESULTS.md and benchmarks/results/latest.json")
    return 0


def reproducible_command(argv: list[str]) -> str:
    """The command line as the report shows it: without ``--out``, because where the report
    is written does not change the results, and a local folder means nothing to a reader."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return " ".join(["python -m benchmarks", *kept])


def main(argv: list[str] | None = None) -> int:
    """Run the selected workloads x methods x seeds and write the report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.render is not None:
        return _render(args.render, args.publish)
    if not args.no_reexec:
        _maybe_reexec(argv)

    import torch

    from . import report
    from .costs import measure_costs
    from .harness import BenchConfig, Harness
    from .methods import LR_GRID, METHODS, default_methods, hybrid_available
    from .summary import summarise
    from .workloads import WORKLOADS, load_or_skip

    threads = args.threads or min(os.cpu_count() or 1, 2)
    torch.set_num_threads(threads)
    names = (["mnist-mlp"] if args.quick and not args.workloads else
             (args.workloads.split(",") if args.workloads else list(WORKLOADS)))
    unknown = [n for n in names if n not in WORKLOADS]
    method_names = args.methods.split(",") if args.methods else default_methods()
    unknown += [m for m in method_names if m not in METHODS]
    if unknown:
        print(f"unknown workload/method: {', '.join(unknown)}; workloads: "
              f"{', '.join(WORKLOADS)}; methods: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    why_not = hybrid_available()
    if why_not:
        print(f"hybrid methods skipped: the trainer does not import ({why_not})")
        method_names = [m for m in method_names if not METHODS[m].hybrid]
    methods = [METHODS[m] for m in method_names]
    cfg = BenchConfig(seeds=args.seeds or 1, steps=args.steps,
                      load_threshold=args.load_threshold,
                      max_repeats=(args.max_repeats if args.max_repeats is not None
                                   else (0 if args.quick else 2)),
                      warmup_steps=40, tune=not args.no_tune,
                      tune_extend=args.tune_extend)
    out = args.out or BENCH_DIR / "results" / time.strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()
    command = reproducible_command(argv)
    result: dict[str, Any] = {"command": command.strip(), "machine": machine_info(threads),
                              "lr_grid": list(LR_GRID),
                              "tune_extend": cfg.tune_extend, "workloads": {}}
    for name in names:
        workload = WORKLOADS[name]
        data, skip = load_or_skip(workload)
        if data is None:
            print(skip)
            result["workloads"][name] = {"skipped": skip}
            continue
        if args.quick and not args.steps and workload.quick_steps:
            cfg.steps = workload.quick_steps
        cfg.seeds = args.seeds or (1 if args.quick else workload.seeds)
        print(f"== {name}: {workload.description}")
        costs = measure_costs(workload, data)
        print(f"  step costs ms: fwd {costs.fwd_ms:.2f} bwd {costs.bwd_ms:.2f} "
              f"opt {costs.opt_ms:.2f} no-grad fwd {costs.nograd_fwd_ms:.2f}; "
              f"bwd/fwd = {costs.bwd_fwd_ratio:.2f}")
        h = Harness(workload, data, methods, cfg)
        h.warm_up()
        h.tune()
        print("  lrs: " + ", ".join(f"{m}={lr:g}" for m, lr in h.lrs.items()))
        h.evaluate_seeds()
        entry = summarise(h, costs)
        result["workloads"][name] = entry
        f = entry["bound_predicted_fraction"]
        print(f"  bwd/fwd = {entry['bwd_fwd_ratio']:.2f}; bound 3/(3-2f) = {entry['bound']:.2f}x "
              f"at f = {f:.2f} (measured-cost bound {entry['bound_measured']:.2f}x)")
        for m, e in entry["methods"].items():
            sp = "-" if e["speedup_median"] is None else f"{e['speedup_median']:.2f}x"
            print(f"  {m:22s} speed-up {sp:>7s} [{e['speedup_min']}, {e['speedup_max']}] "
                  f"reached {e['reached_seeds']} predicted {100 * e['predicted_fraction']:.0f}% "
                  f"final {e['final_val_loss']}")
        cfg.steps = args.steps
    result["elapsed_s"] = time.perf_counter() - started
    files = report.write(result, out)
    print(f"wrote {len(files)} files to {out}")
    if args.publish:
        report.publish(out)
        print("published to benchmarks/RESULTS.md and benchmarks/results/latest.json")
    return 0
