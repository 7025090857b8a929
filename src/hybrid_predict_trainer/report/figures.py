"""The PNG figures of a training run.

Why these five: loss against wall time is the claim (faster to the same loss); loss against
steps shows whether predicted steps trained as well as real ones; the phase timeline shows
what the trainer did and where it rolled back; confidence against its threshold explains why
it predicted when it did; backward passes saved is the cost the prediction removed.
"""
from __future__ import annotations

from itertools import accumulate, groupby
from pathlib import Path
from typing import Any

from .runlog import RunLog
from .style import JUMP_MARKS, PHASE_COLORS, new_figure, save, thin

PHASES = ("warmup", "full", "predict", "correct")


def _wall(log: RunLog) -> list[float]:
    return list(accumulate(float(r.get("wall_s") or 0.0) for r in log.steps))


def _smooth(values: list[float]) -> list[float]:
    """Centred moving average over ~2% of the run (at least 5 steps): no lag, unlike an EMA."""
    n = len(values)
    half = max(2, n // 100)
    sums = [0.0, *accumulate(values)]
    return [(sums[min(n, i + half + 1)] - sums[max(0, i - half)])
            / (min(n, i + half + 1) - max(0, i - half)) for i in range(n)]


def _is_rollback(rec: dict[str, Any]) -> bool:
    """A step that restored earlier weights: the segment verdict or a divergence action."""
    text = str(rec.get("transition") or "")
    return bool(rec.get("rolled_back")) or "rolled back" in text or "restored" in text


def loss_vs_time(log: RunLog, path: Path) -> Path:
    """Training loss (smoothed) and validation loss against training wall time."""
    fig, ax = new_figure()
    wall = _wall(log)
    pts = [(t, r["loss"]) for t, r in zip(wall, log.steps) if r.get("loss") is not None]
    if pts:
        t, v = zip(*thin(pts))
        ax.plot(t, v, ".", ms=2, color="#9aa7b8", alpha=0.5, label="training loss (per step)")
        ax.plot(t, _smooth(list(v)), color="#1f3b63", lw=1.6, label="training loss (smoothed)")
    if log.evals:
        ax.plot([e["train_time_s"] for e in log.evals], [e["val_loss"] for e in log.evals],
                "o-", color="#d62728", ms=4, lw=1.4, label="validation loss")
    ax.set_xlabel("training wall time, s (validation and checkpoints excluded)")
    ax.set_ylabel("loss")
    ax.set_title("Loss against wall time")
    ax.legend(fontsize=8)
    return save(fig, path)


def loss_vs_steps(log: RunLog, path: Path) -> Path:
    """Loss of every step, coloured by phase (predicted steps: the verified loss)."""
    fig, ax = new_figure()
    for phase in PHASES:
        pts = [(r["step"], r["loss"]) for r in log.steps
               if r.get("phase") == phase and r.get("loss") is not None]
        if pts:
            s, v = zip(*thin(pts))
            ax.plot(s, v, ".", ms=3, color=PHASE_COLORS[phase], label=phase, alpha=0.8)
    real = [(r["step"], r["loss"]) for r in log.steps
            if r.get("loss") is not None and not r.get("predicted")]
    if real:
        s, v = zip(*real)
        ax.plot(s, _smooth(list(v)), color="#000000", lw=1.2, label="real-step loss (smoothed)")
    if log.evals:
        ax.plot([e["step"] for e in log.evals], [e["val_loss"] for e in log.evals], "o-",
                color="#d62728", ms=4, lw=1.2, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss against steps (predicted steps show their verified loss)")
    ax.legend(fontsize=8, ncol=3)
    return save(fig, path)


def timeline(log: RunLog, path: Path) -> Path:
    """The phase of every step as coloured bands; rollbacks, failed checks and the checked
    jumps (kept or undone) marked. With the default settings every step is a real one, so
    the bands alone would say nothing: the jumps, and the gaps where they paused, are what
    the trainer did."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig, ax = new_figure(height=2.6)
    spans = _phase_spans(log)
    for phase, ranges in spans.items():
        ax.broken_barh(ranges, (0, 1), facecolors=PHASE_COLORS.get(phase, "#000"))
    start = len(log.steps)
    rolled = [r["step"] for r in log.steps if _is_rollback(r)]
    failed = [r["step"] for r in log.steps if r.get("accepted") is False]
    kept = [r["step"] for r in log.steps if r.get("jumped") is True]
    undone = [r["step"] for r in log.steps if r.get("jumped") is False]
    for verdict, steps in ((True, kept), (False, undone)):
        if steps:
            mark = JUMP_MARKS[verdict]
            ax.plot(steps, [-0.1] * len(steps), mark["marker"], color=mark["color"],
                    ms=mark["ms"])
    if failed:
        ax.plot(failed, [1.12] * len(failed), "x", color="#7f7f7f", ms=4)
    if rolled:
        ax.plot(rolled, [1.12] * len(rolled), "v", color="#d62728", ms=7)
    ax.set_ylim(-0.25, 1.35)
    ax.set_yticks([])
    ax.set_xlim(0, max(start, 1))
    ax.set_xlabel("step")
    handles = [Patch(color=PHASE_COLORS[p], label=p) for p in PHASES]
    handles += [Line2D([], [], marker="v", color="#d62728", ls="", label="rollback"),
                Line2D([], [], marker="x", color="#7f7f7f", ls="", label="failed check")]
    handles += [Line2D([], [], marker=m["marker"], color=m["color"], ls="", label=m["label"])
                for m in JUMP_MARKS.values()]
    ax.legend(handles=handles, fontsize=8, ncol=8, loc="lower center",
              bbox_to_anchor=(0.5, 1.02), frameon=False)
    jumps = f", {_count(len(kept), 'jump')} kept, {len(undone)} undone" if kept or undone else ""
    ax.set_title(f"Phase timeline: {_count(len(rolled), 'rollback')}, "
                 f"{_count(len(failed), 'failed check')}{jumps}", pad=26)
    return save(fig, path)


def confidence(log: RunLog, path: Path) -> Path:
    """The gate's confidence score against its threshold; Predict phases shaded."""
    fig, ax = new_figure()
    threshold = float(log.config.get("confidence_threshold", 0.55))
    pts = _fresh_confidence(log)
    start = len(log.steps)
    predicting = _phase_spans(log).get("predict")
    if predicting:
        ax.broken_barh(predicting, (-0.02, 1.04), facecolors=PHASE_COLORS["predict"],
                       alpha=0.15, lw=0)
    if pts:
        s, c = zip(*thin(pts))
        ax.plot(s, c, "-", color="#1f3b63", lw=1.2, label="confidence")
    ax.axhline(threshold, color="#d62728", ls="--", lw=1.2, label=f"threshold {threshold:g}")
    off = [r["step"] for r in log.steps if "auto-off" in str(r.get("transition") or "")]
    for i, step in enumerate(off):
        ax.axvline(step, color="#7f7f7f", ls=":", lw=1.2,
                   label="auto-off (gate not re-evaluated until the re-probe)" if i == 0 else None)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(start, 1))
    ax.set_xlabel("step")
    ax.set_ylabel("confidence score")
    title = "Confidence against its threshold (green: predicting)"
    if not pts:
        title += " - the gate was never evaluated"
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return save(fig, path)


def _phase_spans(log: RunLog) -> dict[str, list[tuple[int, int]]]:
    """(start, length) of every run of consecutive steps in one phase, per phase (one
    drawing call per phase keeps long runs with many phase changes fast to plot)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for phase, group in groupby(str(r.get("phase")) for r in log.steps):
        n = len(list(group))
        spans.setdefault(phase, []).append((start, n))
        start += n
    return spans


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fresh_confidence(log: RunLog) -> list[tuple[float, float]]:
    """(step, confidence) while the gate is being evaluated; NaN after auto-off (the value
    carried in the records is then stale) until prediction starts again."""
    pts, off = [], False
    for r in log.steps:
        text = str(r.get("transition") or "")
        if "auto-off" in text:
            off = True
        elif "-> predict" in text:
            off = False
        if r.get("confidence") is not None:
            pts.append((r["step"], float("nan") if off else r["confidence"]))
    return pts


def backward_saved(log: RunLog, path: Path) -> Path:
    """Backward passes saved so far (steps that ran none), and that as a share of the steps."""
    fig, ax = new_figure()
    steps = [r["step"] + 1 for r in log.steps]
    saved = list(accumulate(int(not r.get("backward")) for r in log.steps))
    ax.fill_between(steps, 0, saved, color=PHASE_COLORS["predict"], alpha=0.35, lw=0)
    ax.plot(steps, saved, color="#2d6a3e", lw=1.6, label="backward passes saved (cumulative)")
    ax.set_xlabel("step")
    ax.set_ylabel("backward passes saved")
    share = ax.twinx()
    share.plot(steps, [100.0 * s / n for s, n in zip(saved, steps)], color="#1f3b63", lw=1.0,
               ls="--", label="share of steps so far, %")
    share.set_ylabel("% of steps")
    share.set_ylim(0, 100)
    total, n = (saved[-1], steps[-1]) if steps else (0, 0)
    ax.set_title(f"Backward passes saved: {total} of {n} steps ({100 * total / max(n, 1):.0f}%)")
    lines = ax.get_legend_handles_labels()
    more = share.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="center right")
    return save(fig, path)


def run_figures(log: RunLog, out: Path) -> dict[str, Any]:
    """Write every figure into ``out``; returns {title: path}."""
    return {
        "Loss against wall time": loss_vs_time(log, out / "loss_vs_time.png"),
        "Loss against steps": loss_vs_steps(log, out / "loss_vs_steps.png"),
        "Phase timeline": timeline(log, out / "timeline.png"),
        "Confidence and threshold": confidence(log, out / "confidence.png"),
        "Backward passes saved": backward_saved(log, out / "backward_saved.png"),
    }
