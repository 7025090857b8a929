"""The end-of-run text summary: what the trainer did, why, and the health monitor's report.

Why plain text: it is printed at the end of ``hpt train``, written to ``health.txt``, shown in
Lightning's log and embedded in the HTML report; one renderer keeps them identical.
"""
from __future__ import annotations

from typing import Any


def run_text_report(trainer: Any) -> str:
    """Counts, the reason prediction never started or was switched off, and the monitor's
    findings (or a note that the monitor was off)."""
    s = trainer.summary()
    lines = [f"hybrid: {s['steps']} steps, {s['backward_passes']} backward passes, "
             f"{s['predicted_steps']} predicted ({100 * s['predicted_fraction']:.0f}%), "
             f"{s['segments']} segments, {s['rollbacks']} rollbacks"]
    if s.get("never_predicted_reason"):
        lines.append(f"never predicted: {s['never_predicted_reason']}")
    if s.get("auto_off"):
        lines.append(str(s["auto_off"]))
    jumps = s.get("jumps")
    if jumps:
        lines.append(f"jumps onto the slow weights: {jumps['accepted']} kept, "
                     f"{jumps['rejected']} undone"
                     + (f"; alpha {jumps['alpha']:.2f} now, at most {jumps['alpha_peak']:.2f}"
                        if jumps.get("alpha_step") or jumps.get("calm_alpha") else "")
                     + (" (the paired checks find the jumps calm)" if jumps.get("calm") else "")
                     + (f"; {jumps['paused']}" if jumps.get("paused") else ""))
    monitor = getattr(trainer, "monitor", None)
    if monitor is not None and hasattr(monitor, "report"):
        lines.append(monitor.report())
    else:
        lines.append("Training health: the monitor was off ([hybrid] monitor = false).")
    return "\n".join(lines)
