"""End-of-run text report and JSON summary of a monitor.

Why both: people read the text at the end of a run; the dict goes into the JSONL log and CI.
Configured checks that never ran are listed too, because a check that silently did nothing is
itself a silent failure (case H).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .finding import SEVERITY_RANK

if TYPE_CHECKING:  # pragma: no cover
    from .core import HealthMonitor


def _not_run(monitor: "HealthMonitor") -> list[str]:
    return [line for check in monitor.checks for line in check.not_run()]


def render_summary(monitor: "HealthMonitor") -> dict[str, Any]:
    findings = monitor.findings
    counts = {sev: sum(1 for f in findings if f.severity == sev) for sev in SEVERITY_RANK}
    return {
        "steps": monitor.steps,
        "optimizer_steps": sum(g.updates for g in monitor.groups if g.optimizer is not None),
        "policy": monitor.config.policy,
        "clean": counts["warning"] + counts["error"] == 0,
        "counts": counts,
        "findings": [f.to_dict() for f in findings],
        "monitor_seconds": round(monitor.seconds, 6),
        "checks": {"grad-norms": {"runs": monitor._norm_runs,
                                  "seconds": round(monitor._norm_seconds, 6)}}
        | {c.name: {"runs": c.runs, "seconds": round(c.seconds, 6)} for c in monitor.checks},
        "not_run": _not_run(monitor),
    }


def render_report(monitor: "HealthMonitor") -> str:
    findings = sorted(monitor.findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.step))
    not_run = _not_run(monitor)
    n = monitor.steps
    serious = [f for f in findings if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]]
    if not serious:
        head = f"Training health: no problems found in {n} steps"
        head += f" ({len(findings)} informational notes)." if findings else "."
    else:
        parts = [f"{sum(1 for f in findings if f.severity == s)} {s}"
                 f"{'s' if sum(1 for f in findings if f.severity == s) != 1 else ''}"
                 for s in ("error", "warning", "info")
                 if any(f.severity == s for f in findings)]
        head = f"Training health: {len(findings)} findings in {n} steps ({', '.join(parts)})."
    lines = [head]
    for f in findings:
        seen = f", seen {f.count} times" if f.count > 1 else ""
        lines += ["", f"{f.severity.upper()} {f.code} (step {f.step}, {f.where}{seen})",
                  f"  {f.message}", f"  observed: {f.observed}", f"  expected: {f.expected}",
                  f"  suggestion: {f.suggestion}"]
    if not_run:
        lines += ["", "Configured checks that never ran:"] + [f"  - {line}" for line in not_run]
    return "\n".join(lines)
