"""Turns a workload's runs into the per-method figures of ``report.json``.

Per seed, the target is the validation loss ``adamw-tuned`` reaches at its step budget times
1.005. The loss at the budget is the mean of its last three evaluations, so that one lucky or
unlucky evaluation of a wobbling curve does not move the target. Each method's speed-up is the
baseline's time to that target divided by its own. A method that never reaches it in a seed
scores 0 there (it is not left out: a median over the seeds where a method happened to
succeed would flatter it). The same-lr figure compares with plain AdamW at the method's own
lr, against that AdamW run's own budget loss + 0.5%.
"""
from __future__ import annotations

from typing import Any

from .analysis import (TARGET_SLACK, crossing, curve_jitter_pct, end_drop_pct, final_loss,
                       loss_at_time, median_or_none, spread, target_loss)
from .costs import StepCosts, measured_bound, physical_bound
from .harness import Harness, RunResult


def _ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return num / den


def _method_entry(name: str, runs: dict[int, RunResult], base: dict[int, RunResult],
                  refs: dict[tuple[int, float], RunResult], lr: float,
                  budget: int) -> dict[str, Any]:
    per_seed: list[dict[str, Any]] = []
    for seed, run in sorted(runs.items()):
        b = base.get(seed)
        row: dict[str, Any] = {"seed": seed, "stopped": run.stopped, "error": run.error,
                               "other_cores": run.other_cores, "attempts": run.attempts,
                               "flagged": run.flagged}
        if b is None or not b.ok:
            row["note"] = "baseline run failed in this seed"
            per_seed.append(row)
            continue
        target = target_loss(b.points)
        b_hit = crossing(b.points, target)
        hit = crossing(run.points, target) if run.ok else None
        cap = b.train_time_s
        row.update({
            "target": target,
            "reached": hit is not None,
            "time_to_target_s": hit[0] if hit else None,
            "steps_to_target": hit[1] if hit else None,
            "backward_to_target": hit[2] if hit else None,
            "speedup": (_ratio(b_hit[0], hit[0]) if hit and b_hit else 0.0),
            "final_val_loss": loss_at_time(run.points, cap) if run.ok else None,
            "baseline_final_val_loss": final_loss(b.points),
            "steps": run.steps, "backward_passes": run.backward_passes,
            "predicted_steps": run.predicted_steps,
            "predicted_fraction": run.predicted_steps / run.steps if run.steps else 0.0,
            "train_time_s": run.train_time_s,
            "peak_rss_mb": run.peak_rss_mb,
            "rss_growth_mb": (run.peak_rss_mb - run.start_rss_mb
                              if run.peak_rss_mb is not None and run.start_rss_mb is not None
                              else None),
        })
        ref = refs.get((seed, lr))
        if ref is not None and ref.ok and run.ok:
            ref_points = [p for p in ref.points if p[0] <= budget]
            ref_target = target_loss(ref_points)
            r_hit = crossing(ref_points, ref_target)
            m_hit = crossing(run.points, ref_target)
            row["speedup_vs_same_lr"] = (_ratio(r_hit[0], m_hit[0]) if r_hit and m_hit
                                         else 0.0)
        stats = run.stats
        if "segments" in stats:
            row.update({
                "segments": stats.get("segments"), "rollbacks": stats.get("rollbacks"),
                "accepted_steps": stats.get("accepted_steps"),
                "overhead_pct": stats.get("overhead_pct"),
                "overhead_per_step_ms": stats.get("overhead_per_step_ms"),
                "predicted_fraction": stats.get("predicted_fraction",
                                                row["predicted_fraction"]),
                "never_predicted_reason": stats.get("never_predicted_reason"),
                "eta": stats.get("eta"),
                "jumps_accepted": (stats.get("jumps") or {}).get("accepted"),
                "jumps_rejected": (stats.get("jumps") or {}).get("rejected"),
                # no-grad forwards the checks ran (the paired jump checks, probes, segment
                # checks): what the thinned and backed-off checks save shows up here
                "forward_checks": stats.get("forward_checks"),
            })
        else:
            row.update({k: v for k, v in stats.items() if k != "traceback"})
        per_seed.append(row)

    def col(key: str) -> list[Any]:
        return [r.get(key) for r in per_seed]

    speed = spread(col("speedup"))
    finals = col("final_val_loss")
    base_finals = col("baseline_final_val_loss")
    gaps = [100.0 * (f / bf - 1.0) for f, bf in zip(finals, base_finals)
            if f is not None and bf is not None]
    reached = [bool(r.get("reached")) for r in per_seed]
    segments = median_or_none(col("segments"))
    rollbacks = median_or_none(col("rollbacks"))
    return {
        "lr": lr,
        "speedup_median": speed["median"], "speedup_min": speed["min"],
        "speedup_max": speed["max"],
        "speedup_vs_same_lr": median_or_none(col("speedup_vs_same_lr")),
        "reached_target": bool(reached) and all(reached),
        "reached_seeds": f"{sum(reached)}/{len(reached)}",
        "final_val_loss": median_or_none(finals),
        "final_gap_pct": median_or_none(gaps),
        "time_to_target_s": median_or_none(col("time_to_target_s")),
        "steps_to_target": median_or_none(col("steps_to_target")),
        "backward_passes": median_or_none(col("backward_to_target")),
        "backward_passes_total": median_or_none(col("backward_passes")),
        "predicted_steps": median_or_none(col("predicted_steps")),
        "predicted_fraction": median_or_none(col("predicted_fraction")) or 0.0,
        "segments": segments,
        "accepted_segments": (segments - rollbacks if segments is not None
                              and rollbacks is not None else None),
        "rollbacks": rollbacks if rollbacks is not None else 0,
        "jumps_accepted": median_or_none(col("jumps_accepted")),
        "jumps_rejected": median_or_none(col("jumps_rejected")),
        "forward_checks": median_or_none(col("forward_checks")),
        "overhead_pct": median_or_none(col("overhead_pct")),
        "overhead_per_step_ms": median_or_none(col("overhead_per_step_ms")),
        "peak_rss_mb": median_or_none(col("peak_rss_mb")),
        "rss_growth_mb": median_or_none(col("rss_growth_mb")),
        "flagged_runs": sum(bool(r.get("flagged")) for r in per_seed),
        "errors": sorted({r["error"] for r in per_seed if r.get("error")}),
        "per_seed": per_seed,
    }


def summarise(h: Harness, costs: StepCosts) -> dict[str, Any]:
    """The workload entry of ``report.json`` (schema in ``benchmarks/README.md``)."""
    evals = [r for r in h.runs if r.role == "eval"]
    base = {r.seed: r for r in evals if r.method == "adamw-tuned"}
    refs = {(r.seed, r.lr): r for r in h.runs if r.role in ("eval", "ref")
            and r.method in ("adamw", "adamw-tuned") and r.steps >= h.budget}
    names = [m.name for m in h.methods]
    if "adamw-tuned" not in names:
        names.insert(0, "adamw-tuned")
    methods = {}
    for name in names:
        runs = {r.seed: r for r in evals if r.method == name}
        if runs:
            methods[name] = _method_entry(name, runs, base, refs, h.lrs[name], h.budget)
    hybrids = {n: e for n, e in methods.items() if n.startswith("hybrid")}
    best = max(hybrids.values(), key=lambda e: e["speedup_median"] or 0.0, default=None)
    f = best["predicted_fraction"] if best else 0.0
    ok_base = [b for b in base.values() if b.ok]
    return {
        "description": h.workload.description,
        "bwd_fwd_ratio": costs.bwd_fwd_ratio,
        "bound": physical_bound(f),
        "bound_measured": measured_bound(costs, f),
        "bound_predicted_fraction": f,
        "costs_ms": costs.to_dict(),
        "budget_steps": h.budget,
        "seeds": h.cfg.seeds,
        "eval_every": h.workload.eval_every,
        "default_lr": h.workload.default_lr,
        "tuned_lr": h.lrs.get("adamw-tuned"),
        "tuning": h.tuning,
        "target_median": median_or_none([target_loss(b.points) for b in ok_base]),
        "baseline_time_s": median_or_none([b.train_time_s for b in ok_base]),
        "end_drop_pct": median_or_none([end_drop_pct(b.points) for b in ok_base]),
        "curve_jitter_pct": median_or_none([curve_jitter_pct(b.points) for b in ok_base]),
        "val_rel_se": median_or_none([b.stats.get("val_rel_se") for b in ok_base]),
        "flagged_runs": sum(r.flagged for r in h.runs),
        "repeated_runs": sum(r.attempts > 1 for r in h.runs),
        "max_other_cores": max((r.other_cores or 0.0 for r in h.runs), default=0.0),
        "methods": methods,
        "runs": [r.to_dict() for r in h.runs],
    }


def statistics_note() -> str:
    """The paragraph of the report saying how the numbers are computed."""
    return (f"Speed-up = adamw-tuned's time to target / the method's time to target, median "
            f"[min-max] over seeds. Target = adamw-tuned's validation loss at its step budget "
            f"(mean of its last three evaluations) x {TARGET_SLACK}; a method reaches it when "
            f"the mean of its own last three evaluations does (crossing interpolated between "
            f"evaluations). Each method may train up to 1.5x the baseline's time; a seed where "
            f"it does not reach the target by then counts as 0")
