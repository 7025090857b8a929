"""The side-by-side comparison of a benchmark results folder (``report.json`` written by
``python -m benchmarks`` / ``hpt bench``).

Why re-render here: ``hpt report`` gives one self-contained HTML page for a run or a
benchmark alike. Only documented fields of ``report.json`` are read, and missing ones are
shown as '-', so an older or partial results file still renders.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .style import new_figure, save

_PALETTE = ["#000000", "#7f7f7f", "#2ca02c", "#17becf", "#9467bd", "#d62728", "#ff7f0e",
            "#8c564b", "#e377c2", "#bcbd22"]

COLUMNS = ("method", "lr", "speed-up (median [min-max])", "reached", "time to target s",
           "backward to target", "predicted", "final val loss (gap)", "rollbacks", "overhead")


def read_bench(folder: Path) -> dict[str, Any]:
    path = folder / "report.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"report: '{path}' is not a readable benchmark report ({exc}); "
                          "re-run the benchmark (hpt bench)") from None
    if not isinstance(data.get("workloads"), dict):
        raise ConfigError(f"report: '{path}' has no 'workloads' table; it was not written by "
                          "the benchmark suite")
    return data


def _f(v: Any, fmt: str = ".2f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt)


def method_rows(workload: dict[str, Any]) -> list[list[str]]:
    """One row per method, in the order of ``COLUMNS``."""
    rows = []
    for name, e in workload.get("methods", {}).items():
        speed = (f"{_f(e.get('speedup_median'))}x [{_f(e.get('speedup_min'))}-"
                 f"{_f(e.get('speedup_max'))}]")
        gap = e.get("final_gap_pct")
        rows.append([
            name, _f(e.get("lr"), "g"), speed,
            "yes" if e.get("reached_target") else f"no ({e.get('reached_seeds', '-')})",
            _f(e.get("time_to_target_s")), _f(e.get("backward_passes"), ".0f"),
            f"{100 * (e.get('predicted_fraction') or 0.0):.0f}%",
            f"{_f(e.get('final_val_loss'), '.4f')} ({_f(gap, '+.2f')}%)",
            _f(e.get("rollbacks"), ".0f"),
            f"{_f(e.get('overhead_pct'), '.1f')}%" if e.get("overhead_pct") is not None else "-",
        ])
    return rows


def method_colors(data: dict[str, Any]) -> dict[str, str]:
    """One colour per method, the same in every figure of the report."""
    names: list[str] = []
    for w in data["workloads"].values():
        for m in w.get("methods", {}):
            if m not in names:
                names.append(m)
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def speedups_figure(data: dict[str, Any], path: Path) -> Path | None:
    """Median speed-up against the tuned baseline, one panel per workload, whiskers min-max;
    a method that never reached the target is labelled so instead of drawn as a zero bar."""
    from .style import _pyplot

    done = {n: w for n, w in data["workloads"].items() if w.get("methods")}
    if not done:
        return None
    colors = method_colors(data)
    rows = max(len(w["methods"]) for w in done.values())
    plt = _pyplot()
    fig, axes = plt.subplots(len(done), 1, figsize=(9, 0.9 + 0.38 * rows * len(done)),
                             dpi=110, squeeze=False)
    for ax, (name, w) in zip(axes[:, 0], done.items()):
        methods = list(w["methods"])
        top = max([(w["methods"][m].get("speedup_max") or 0.0) for m in methods] + [1.0])
        for y, m in enumerate(methods):
            e = w["methods"][m]
            med = e.get("speedup_median") or 0.0
            if med <= 0:
                ax.text(0.02 * top, y, "target not reached", va="center", fontsize=8,
                        color="#7f7f7f")
                continue
            lo = max(0.0, med - (e.get("speedup_min") or med))
            hi = max(0.0, (e.get("speedup_max") or med) - med)
            ax.barh(y, med, 0.7, color=colors[m], xerr=[[lo], [hi]],
                    error_kw={"lw": 0.8, "capsize": 2})
            ax.text(med + hi + 0.01 * top, y, f"{med:.2f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="#000000", lw=0.8)
        ax.set_yticks(range(len(methods)), methods, fontsize=8)
        ax.set_ylim(len(methods) - 0.4, -0.6)              # first method on top
        ax.set_xlim(0, top * 1.18)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(name, fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("speed-up against the tuned baseline (time to target; median, "
                           "whiskers min-max over seeds)")
    return save(fig, path)


def curves_figure(name: str, workload: dict[str, Any], path: Path, x_index: int,
                  x_label: str, colors: dict[str, str]) -> Path | None:
    """Validation loss of the first seed of every method, against time or backward passes."""
    runs = [r for r in workload.get("runs", []) if r.get("role") == "eval" and r.get("points")]
    if not runs:
        return None
    seed = min(r["seed"] for r in runs)
    colors = dict(colors)
    fig, ax = new_figure(height=4.6)
    for r in runs:
        if r["seed"] != seed:
            continue
        if r["method"] not in colors:
            colors[r["method"]] = _PALETTE[len(colors) % len(_PALETTE)]
        xs = [p[x_index] for p in r["points"]]
        ys = [p[4] for p in r["points"]]
        ax.plot(xs, ys, color=colors[r["method"]], lw=1.4, label=r["method"],
                ls="--" if r["method"].startswith("adamw") else "-")
    target = workload.get("target_median")
    if target:
        ax.axhline(target, color="#d62728", lw=0.8, ls=":", label="target")
    finals = [p[4] for r in runs for p in r["points"][len(r["points"]) // 2:]]
    firsts = [p[4] for r in runs for p in r["points"][1:2]]
    if finals and firsts and max(firsts) > min(finals):
        lo, hi = min(finals), max(firsts)
        ax.set_ylim(lo - 0.08 * (hi - lo), hi)
    ax.set_xlabel(x_label)
    ax.set_ylabel("validation loss")
    ax.set_title(f"{name}: validation loss against {x_label.split(',')[0]} (seed {seed})")
    ax.legend(fontsize=8, ncol=2)
    return save(fig, path)


def bench_figures(data: dict[str, Any], out: Path) -> dict[str, Path]:
    figs: dict[str, Path] = {}
    colors = method_colors(data)
    sp = speedups_figure(data, out / "speedups.png")
    if sp:
        figs["Speed-ups"] = sp
    for name, w in data["workloads"].items():
        t = curves_figure(name, w, out / f"curves_time_{name}.png", 1,
                          "training time, s", colors)
        if t:
            figs[f"{name}: loss against time"] = t
        b = curves_figure(name, w, out / f"curves_backward_{name}.png", 2,
                          "backward passes", colors)
        if b:
            figs[f"{name}: loss against backward passes"] = b
    return figs
