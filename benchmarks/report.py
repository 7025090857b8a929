"""Writes ``report.json``, ``report.md`` and the PNG plots; optionally publishes them.

Why JSON first: every figure in the Markdown is read back from the JSON, so the committed
``RESULTS.md`` can never disagree with ``results/latest.json``. Publishing copies a run's
files to ``benchmarks/RESULTS.md``, ``benchmarks/results/latest.json`` and
``benchmarks/results/*.png`` (the only result files kept in version control).
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from . import plots
from .analysis import head_to_head
from .methods import DEFAULT_METHOD
from .summary import statistics_note

BENCH_DIR = Path(__file__).resolve().parent
SCHEMA_KEYS = ("lr", "speedup_median", "speedup_min", "speedup_max", "speedup_vs_same_lr",
               "reached_target", "final_val_loss", "backward_passes", "predicted_fraction",
               "rollbacks", "overhead_pct", "peak_rss_mb")


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: write them as null so every reader can parse the file."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _f(value: Any, fmt: str = ".2f", none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, float) and not math.isfinite(value):
        return none
    return format(value, fmt)


def _speed(e: dict[str, Any]) -> str:
    if e["speedup_median"] is None:
        return "-"
    return (f"**{e['speedup_median']:.2f}x** [{_f(e['speedup_min'])}-{_f(e['speedup_max'])}]")


def _extension_note(extend: int) -> str:
    if not extend:
        return ""
    return ("; a method whose best lr was the grid's highest (lowest) also tried twice (half) "
            f"that lr beside it, and went on while the new lr was better, at most {extend} "
            "doublings (halvings) past the grid ('beyond the grid' in the lr column; 'edge': "
            "its best still lay at the edge of the lrs it tried)")


def _lr_marks(method: str, lr: float, w: dict[str, Any]) -> tuple[bool, bool]:
    """(tuning went past the grid for this method, its lr is the highest or lowest it tried:
    its best may lie further out, see ``--tune-extend``)."""
    t = w.get("tuning", {}).get(method)
    if not t:
        return False, False
    grid = [float(k) for k in t.get("grid", t.get("scores", {}))]
    tried = grid + [e["lr"] for e in t.get("extended", ())]
    beyond = bool(grid) and not any(math.isclose(lr, g, rel_tol=1e-5) for g in grid)
    edge = len(tried) > 1 and (lr >= max(tried) * (1 - 1e-5) or lr <= min(tried) * (1 + 1e-5))
    return beyond, edge


def _lr_cell(method: str, lr: float, w: dict[str, Any]) -> str:
    """The method's lr, marked "beyond the grid" and "edge" (:func:`_lr_marks`)."""
    beyond, edge = _lr_marks(method, lr, w)
    return f"{lr:g}" + (" (beyond the grid)" if beyond else "") + (" (edge)" if edge else "")


def workload_markdown(name: str, w: dict[str, Any]) -> str:
    """One section: setup line, cost line, bound, and a table of every method."""
    if w.get("skipped"):
        return f"## {name}\n\n**Skipped:** {w['skipped']}\n"
    c = w["costs_ms"]
    lines = [
        f"## {name}", "", w["description"], "",
        f"- {w['seeds']} seeds; budget {w['budget_steps']} steps, evaluation every "
        f"{w['eval_every']} steps; "
        f"default lr {w['default_lr']:g}, tuned lr {_f(w['tuned_lr'], 'g')}; "
        f"target (median over seeds) {_f(w['target_median'], '.4f')}; "
        f"adamw-tuned training time {_f(w['baseline_time_s'])} s",
        f"- per-step cost (ms, median): forward {c['fwd_ms']:.2f}, backward {c['bwd_ms']:.2f}, "
        f"optimizer {c['opt_ms']:.2f}, no-grad forward {c['nograd_fwd_ms']:.2f}; "
        f"**bwd/fwd = {w['bwd_fwd_ratio']:.2f}**",
        f"- bound for the best hybrid's predicted fraction f = "
        f"{100 * w['bound_predicted_fraction']:.0f}%: 3/(3-2f) = **{w['bound']:.2f}x**; "
        f"from the measured costs {w['bound_measured']:.2f}x",
        f"- budget end: adamw-tuned's loss still fell {_f(w['end_drop_pct'])}% over the last "
        f"20% of its steps; evaluation-to-evaluation wobble {_f(w['curve_jitter_pct'])}%; "
        f"standard error of the validation mean {_f(100 * (w['val_rel_se'] or 0.0))}% "
        "(the same fixed subset scores every method)",
        f"- load: {w['flagged_runs']} runs flagged (> threshold cores used by other "
        f"processes), {w['repeated_runs']} repeated, max {_f(w['max_other_cores'])} cores",
        "",
        "| method | lr | speed-up vs adamw-tuned | vs same-lr adamw | reached | "
        "time to target s | steps / backward to target | predicted | segments ok / rolled "
        "back | jumps kept / undone (check forwards) | loss at equal time (gap) | overhead | peak RSS MB (growth in warm-up) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, e in w["methods"].items():
        seg = (f"{_f(e['accepted_segments'], '.0f')} / {_f(e['rollbacks'], '.0f')}"
               if e.get("segments") is not None else "-")
        jumps = (f"{_f(e['jumps_accepted'], '.0f')} / {_f(e['jumps_rejected'], '.0f')}"
                 if e.get("jumps_accepted") is not None else "-")
        if e.get("jumps_accepted") is not None and e.get("forward_checks") is not None:
            jumps += f" ({_f(e['forward_checks'], '.0f')})"
        reached = "yes" if e["reached_target"] else f"**no** ({e['reached_seeds']})"
        gap = f"{_f(e['final_val_loss'], '.4f')} ({_f(e['final_gap_pct'], '+.2f')}%)"
        overhead = (f"{_f(e['overhead_pct'], '.1f')}% ({_f(e['overhead_per_step_ms'])} ms)"
                    if e.get("overhead_pct") is not None else "-")
        lines.append(
            f"| {m} | {_lr_cell(m, e['lr'], w)} | {_speed(e)} | {_f(e['speedup_vs_same_lr'])}x | {reached} "
            f"| {_f(e['time_to_target_s'])} | {_f(e['steps_to_target'], '.0f')} / "
            f"{_f(e['backward_passes'], '.0f')} | {100 * e['predicted_fraction']:.0f}% | {seg} "
            f"| {jumps} | {gap} | {overhead} | {_f(e['peak_rss_mb'], '.0f')} "
            f"({_f(e['rss_growth_mb'], '+.0f')}) |")
    errors = {m: e["errors"] for m, e in w["methods"].items() if e.get("errors")}
    for m, errs in errors.items():
        lines.append(f"\n**{m} failed:** {'; '.join(errs)}")
    reasons = {m: r.get("never_predicted_reason") for m, e in w["methods"].items()
               for r in e["per_seed"][:1] if r.get("never_predicted_reason")}
    for m, why in reasons.items():
        lines.append(f"\n{m} never predicted (seed 0): {why}")
    lines += ["", f"![{name} loss vs time](loss_vs_time_{name}.png)"]
    if any(r["timeline"] for r in w.get("runs", [])):
        lines.append(f"![{name} hybrid timeline](timeline_{name}.png)")
    return "\n".join(lines) + "\n"


PEERS = ("lookahead", "selective-backprop", "linear-extrapolation")


def goals_markdown(workloads: dict[str, Any]) -> str:
    """The benchmark goals, checked against the library's default configuration.

    The targets are judged on ``DEFAULT_METHOD`` (what ``HybridTrainer(model, optimizer)``
    does), not on the best hybrid of each workload: picking the winner after the fact would
    flatter every figure. The best hybrid and the best peer stand beside it for reference.
    """
    done = {n: w for n, w in workloads.items() if w.get("methods")}
    rows = []
    for n, w in done.items():
        hyb = {m: e for m, e in w["methods"].items() if m.startswith("hybrid")}
        if DEFAULT_METHOD not in hyb:
            continue
        best_m, best = max(hyb.items(), key=lambda kv: kv[1]["speedup_median"] or 0.0)
        peers = [(w["methods"][p]["speedup_median"] or 0.0, p) for p in PEERS
                 if p in w["methods"]]
        rows.append((n, hyb[DEFAULT_METHOD], best_m, best, max(peers) if peers else None))
    if not rows:
        return ""

    def sp(e: dict[str, Any]) -> float:
        return e["speedup_median"] or 0.0

    n_fast = sum(sp(d) >= 1.2 for _, d, _, _, _ in rows)
    slow = [f"{n} ({sp(d):.2f}x)" for n, d, _, _, _ in rows if sp(d) < 0.95]
    quality = [f"{n} ({_f(d['final_gap_pct'], '+.2f')}%)" for n, d, _, _, _ in rows
               if d["final_gap_pct"] is None or d["final_gap_pct"] > 0.5]
    def duel(n: str, d: dict[str, Any], peer: str) -> str:
        h = head_to_head(d.get("per_seed", []), done[n]["methods"][peer].get("per_seed", []))
        if h is None:
            return ""
        return f"; seed by seed {h['wins']}/{h['seeds']} sooner, sign test p {h['sign_p']:.2f}"

    def edges(n: str, peer: str) -> str:
        w = done[n]
        at = [m for m in (DEFAULT_METHOD, peer) if w["methods"][m].get("lr") is not None
              and _lr_marks(m, w["methods"][m]["lr"], w)[1]]
        if not at:
            return ""
        who = "both" if len(at) == 2 else ("the default" if at == [DEFAULT_METHOD] else peer)
        return f"; {who} at the edge of the lrs tried"

    behind = [f"{n} ({sp(d):.2f}x against {p[1]} {p[0]:.2f}x{duel(n, d, p[1])}"
              f"{edges(n, p[1])})" for n, d, _, _, p in rows if p and sp(d) <= p[0]]
    out = ["## Goals, checked against these numbers", "",
           f"Judged on `{DEFAULT_METHOD}`, the library's default configuration; the best "
           "hybrid of each workload (chosen after the fact) and the best peer are shown for "
           "reference.", "",
           f"| workload | {DEFAULT_METHOD} (default) | final-loss gap | best hybrid | best peer |",
           "|---|---|---|---|---|"]
    for n, d, m, b, p in rows:
        peer = f"{p[1]} {p[0]:.2f}x" if p else "-"
        out.append(f"| {n} | {_f(d['speedup_median'])}x | {_f(d['final_gap_pct'], '+.2f')}% "
                   f"| {m} {_f(b['speedup_median'])}x | {peer} |")
    out += ["",
            f"- default >= 1.2x on at least 2 workloads: "
            f"{'met' if n_fast >= 2 else '**missed**'} ({n_fast} of the {len(rows)} run)",
            f"- no workload below 0.95x: {'met' if not slow else '**missed** on ' + ', '.join(slow)}",
            f"- final quality within 0.5% at equal wall time: "
            f"{'met' if not quality else '**missed** on ' + ', '.join(quality)}",
            f"- default ahead of the three peers: "
            f"{'met' if not behind else '**missed** on ' + '; '.join(behind)}", ""]
    return "\n".join(out + head_to_head_markdown(done))


def _duel(h: dict[str, Any] | None) -> str:
    if h is None:
        return "-"
    r = h["median_ratio"]
    ratio = ("the peer missed the target on most" if math.isinf(r) else
             f"{r:.2f}x [{_ratio(h['min_ratio'])}-{_ratio(h['max_ratio'])}]")
    return f"{h['wins']}/{h['seeds']} seeds, {ratio}, sign test p {h['sign_p']:.2f}"


def _ratio(r: float) -> str:
    return "inf" if math.isinf(r) else f"{r:.2f}"


def head_to_head_markdown(workloads: dict[str, Any]) -> list[str]:
    """The default against each peer seed by seed (both trained side by side on each seed)."""
    rows = []
    for n, w in workloads.items():
        ms = w["methods"]
        if DEFAULT_METHOD not in ms or "per_seed" not in ms[DEFAULT_METHOD]:
            continue
        ours = ms[DEFAULT_METHOD]["per_seed"]
        cells = [_duel(head_to_head(ours, ms[p].get("per_seed", []))) if p in ms else "-"
                 for p in PEERS]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return ["Head to head, seed by seed: the seeds on which the default reached the target "
            "sooner than the peer, and the median over seeds of the peer's time to target "
            "divided by the default's (above 1x: the default was faster), with its range over "
            "the seeds and the two-sided sign test's p value (the chance of a split at least "
            "this uneven if either method were as likely to win a seed: above 0.05, these "
            "seeds do not tell the two apart; 3 seeds never go below 0.25, 5 below 0.06, 6 "
            "below 0.03, 7 below 0.02). The medians above compare each method with "
            "the baseline; this compares the two methods on the same batches and the same "
            "minutes of the machine.", "",
            "| workload | " + " | ".join(f"vs {p}" for p in PEERS) + " |",
            "|---|" + "---|" * len(PEERS), *rows, ""]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmark results", "",
        f"Command: `{report['command']}`; {report['elapsed_s'] / 60:.1f} min in all.", "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cpu_count')} cores, torch "
        f"{m.get('torch')}, {m.get('threads')} threads, OMP_WAIT_POLICY="
        f"{m.get('omp_wait_policy')}, Python {m.get('python')}; {m.get('time')}.", "",
        statistics_note() + ".", "",
        "How to read: every method starts from the same initial weights and sees the same "
        "batches; time is training time only (evaluation excluded). The methods of a seed train "
        "side by side in lock-step, one step of each per round in an order shuffled every "
        "round, so a drift in the machine's "
        "speed hits all of them alike; peak memory comes from each method's warm-up run, "
        "made alone. Every tuned method runs at its own best lr from the grid "
        f"{report['lr_grid']} x default, chosen on a separate seed by the same rules"
        f"{_extension_note(report.get('tune_extend', 0))}. 'vs same-lr adamw' compares with plain AdamW at the method's lr (against that "
        "run's own target) and is shown only as a secondary figure: the tuned baseline is the "
        "one that counts. 'loss at equal time' is the validation loss after the tuned "
        "baseline's full training time; gap is relative to the baseline's.", "",
        "![speed-ups](speedups.png)", "",
        goals_markdown(report["workloads"]),
    ]
    for name, w in report["workloads"].items():
        lines.append(workload_markdown(name, w))
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path) -> list[Path]:
    """Write the JSON, the Markdown and every plot into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, w in report["workloads"].items():
        if w.get("methods"):
            files.append(plots.loss_vs_time(name, w, out / f"loss_vs_time_{name}.png"))
            tl = plots.timeline(name, w, out / f"timeline_{name}.png")
            if tl:
                files.append(tl)
    sp = plots.speedups(report["workloads"], out / "speedups.png")
    if sp:
        files.append(sp)
    (out / "report.json").write_text(json.dumps(_clean(report), indent=1), encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return [out / "report.json", out / "report.md", *files]


# Sections after this line in RESULTS.md come from other commands (monitor, faults, the
# choice of defaults); publishing a benchmark run replaces only what is above it.
KEEP_MARKER = "<!-- kept when a benchmark run is published -->"


def publish(out: Path) -> None:
    """Copy a finished run to the committed locations (``RESULTS.md``, ``results/``)."""
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    for old in results.glob("*.png"):
        old.unlink()
    shutil.copyfile(out / "report.json", results / "latest.json")
    md = (out / "report.md").read_text(encoding="utf-8")
    for png in out.glob("*.png"):
        shutil.copyfile(png, results / png.name)
        md = md.replace(f"]({png.name})", f"](results/{png.name})")
    target = BENCH_DIR / "RESULTS.md"
    if target.exists():                          # hand-kept sections survive a new run
        old = target.read_text(encoding="utf-8")
        if KEEP_MARKER in old:
            md = md.rstrip("\n") + "\n\n" + old[old.index(KEEP_MARKER):]
    target.write_text(md, encoding="utf-8")
