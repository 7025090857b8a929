"""PNG figures: validation loss against training time, hybrid phase timelines, speed-ups.

Why these three: the loss-vs-time curves show *where* a method gains or loses (early jumps,
late plateaus), the timeline shows what the hybrid trainer actually did step by step (and
where it rolled back), and the speed-up chart is the one-glance summary across workloads.
matplotlib runs on the Agg backend, so no display is needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

# the library's own report draws phases and jumps alike
from hybrid_predict_trainer.report.style import JUMP_MARKS, PHASE_COLORS  # noqa: E402

_PALETTE = ["#000000", "#7f7f7f", "#2ca02c", "#17becf", "#9467bd", "#d62728", "#ff7f0e",
            "#8c564b", "#e377c2", "#bcbd22", "#1f77b4", "#98df8a", "#ff9896", "#aec7e8",
            "#c49c94", "#dbdb8d", "#9edae5", "#c5b0d5", "#f7b6d2", "#393b79", "#637939",
            "#8c6d31", "#843c39", "#7b4173"]


def _colors(names: list[str]) -> dict[str, str]:
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def loss_vs_time(name: str, entry: dict[str, Any], path: Path) -> Path:
    """Validation loss against training wall time (evaluation excluded), every method."""
    runs = [r for r in entry["runs"] if r["role"] == "eval" and r["points"]]
    names = list(entry["methods"])
    colors = _colors(names)
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=110)
    seeds = sorted({r["seed"] for r in runs})
    for r in runs:
        if r["method"] not in colors:
            continue
        t = [p[1] for p in r["points"]]
        v = [p[4] for p in r["points"]]
        first = r["seed"] == seeds[0]
        ax.plot(t, v, color=colors[r["method"]], lw=1.6 if first else 0.8,
                alpha=0.95 if first else 0.35,
                ls="--" if r["method"] == "adamw" else "-",
                label=r["method"] if first else None)
    target = entry.get("target_median")
    if target:
        ax.axhline(target, color="#d62728", lw=0.8, ls=":", label="target (median)")
    if entry.get("baseline_time_s"):
        ax.axvline(entry["baseline_time_s"], color="#555555", lw=0.8, ls=":")
    finals = [p[4] for r in runs for p in r["points"][len(r["points"]) // 2:]]
    early = [p[4] for r in runs if r["method"] == "adamw-tuned"
             for p in r["points"][max(1, len(r["points"]) // 8):][:1]]
    if finals and early:
        low, high = min(finals), max(early)
        if high > low:
            ax.set_ylim(low - 0.08 * (high - low), high)
    ax.set_xlabel("training time, s (evaluation excluded)")
    ax.set_ylabel("validation loss (fixed subset)")
    ax.set_title(f"{name}: validation loss vs wall time (seed {seeds[0] if seeds else '-'} bold, "
                 "other seeds faint)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def timeline(name: str, entry: dict[str, Any], path: Path) -> Path | None:
    """Phase of every step for each hybrid run of the first seed, with rollbacks and the
    checked jumps marked: the default's steps are all real ('full'), so what it did shows
    only in its jumps, kept or undone, and the gaps where it paused them."""
    runs = [r for r in entry["runs"] if r["role"] == "eval" and r["timeline"]]
    if not runs:
        return None
    seed = min(r["seed"] for r in runs)
    runs = sorted((r for r in runs if r["seed"] == seed), key=lambda r: r["method"])
    fig, ax = plt.subplots(figsize=(10, 0.9 + 0.75 * len(runs)), dpi=110)
    for row, r in enumerate(runs):
        start = 0
        for phase, length in r["timeline"]:
            ax.broken_barh([(start, length)], (row - 0.35, 0.7),
                           facecolors=PHASE_COLORS.get(phase, "#000000"))
            start += length
        if r["rollback_steps"]:
            ax.plot(r["rollback_steps"], [row + 0.42] * len(r["rollback_steps"]), "v",
                    color="#d62728", ms=5)
        for verdict, key in ((True, "jumps_kept_steps"), (False, "jumps_undone_steps")):
            steps = r.get(key) or []   # absent from reports written before the marks
            if steps:
                mark = JUMP_MARKS[verdict]
                ax.plot(steps, [row - 0.45] * len(steps), mark["marker"], color=mark["color"],
                        ms=4, mew=1.0)
        frac = r["predicted_steps"] / max(r["steps"], 1)
        ax.text(start + 1, row, f" {100 * frac:.0f}% predicted", va="center", fontsize=8)
    ax.set_yticks(range(len(runs)), [r["method"] for r in runs], fontsize=9)
    ax.set_ylim(-0.6, len(runs) - 0.1)
    longest = max(sum(n for _, n in r["timeline"]) for r in runs)
    ax.set_xlim(0, longest * 1.15)
    ax.set_xlabel("step")
    handles = [Patch(color=c, label=p) for p, c in PHASE_COLORS.items()]
    handles.append(plt.Line2D([], [], marker="v", color="#d62728", ls="", label="rollback"))
    handles += [plt.Line2D([], [], marker=s["marker"], color=s["color"], ls="", label=s["label"])
                for s in JUMP_MARKS.values()]
    ax.legend(handles=handles, fontsize=8, ncol=7, loc="lower center",
              bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(f"{name}: hybrid phase timeline (seed {seed})", fontsize=10, pad=22)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def speedups(workloads: dict[str, Any], path: Path) -> Path | None:
    """Median speed-up vs adamw-tuned per method and workload, with min-max whiskers."""
    done = {n: w for n, w in workloads.items() if w.get("methods")}
    if not done:
        return None
    methods = [m for m in next(iter(done.values()))["methods"] if m != "adamw-tuned"]
    colors = _colors(["adamw-tuned", *methods])
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(7, 2.4 * len(done)), 4.6), dpi=110)
    for j, m in enumerate(methods):
        xs, meds, lo, hi = [], [], [], []
        for i, w in enumerate(done.values()):
            e = w["methods"].get(m)
            if not e or e["speedup_median"] is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            meds.append(e["speedup_median"])
            lo.append(e["speedup_median"] - (e["speedup_min"] or 0.0))
            hi.append((e["speedup_max"] or 0.0) - e["speedup_median"])
        ax.bar(xs, meds, width * 0.92, color=colors[m], label=m, yerr=[lo, hi],
               error_kw={"lw": 0.8, "capsize": 2})
        for x, med in zip(xs, meds):
            if med == 0.0:  # never reached the target: mark it, a zero-height bar is invisible
                ax.text(x, 0.02, "x", ha="center", va="bottom", fontsize=8, color=colors[m])
    ax.axhline(1.0, color="#000000", lw=0.8)
    ax.set_xticks(range(len(done)), list(done), fontsize=9)
    ax.set_ylabel("speed-up vs adamw-tuned (time to target)")
    ax.set_title("median over seeds, whiskers min-max; x = target not reached (scored 0)",
                 fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
