"""Recall and false alarms of the health monitor on reproduction programs and healthy programs.

Every reproduction program (one or more per finding code) runs with its bug, where the expected
code must be reported, and fixed, where no finding of severity warning or worse may appear.
Every healthy program must stay silent too. Both sets run twice: with the default options and
with every expensive check sampled densely (``DENSE``), the harshest setting for false alarms.

Run from the repository root::

    python -m benchmarks.monitor.recall [--out benchmarks/results/monitor] [--quick]
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .healthy_programs import DENSE, HEALTHY
from .reproductions import REPRODUCTIONS, Run

MODES: dict[str, dict[str, Any]] = {"default": {}, "dense": DENSE}


def _serious(run: Run) -> list[str]:
    return [f"{f.code}@{f.step}" for f in run.monitor.findings if f.severity != "info"]


def _run(fn: Any) -> tuple[Run, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = fn()
    return run, time.perf_counter() - t0


def evaluate(quick: bool = False, only: str | None = None) -> dict[str, Any]:
    """Run every program (or those whose code or name contains ``only``) in every mode."""
    rows: list[dict[str, Any]] = []
    repros = [r for r in REPRODUCTIONS if only is None or only in r.code or only in r.name]
    healthy = [h for h in HEALTHY if only is None or only in h.name]
    for mode, options in MODES.items():
        for r in repros:
            steps = r.test_steps if quick else r.steps
            bug, t_bug = _run(lambda: r.run(False, steps, policy="stop", **options))
            twin, t_twin = _run(lambda: r.run(True, steps, **options))
            first = next((f for f in bug.monitor.findings if f.code == r.code), None)
            rows.append({"kind": "reproduction", "mode": mode, "code": r.code, "name": r.name,
                         "steps": steps, "detected": first is not None,
                         "first_step": first.step if first else None,
                         "bug_findings": _serious(bug), "twin_findings": _serious(twin),
                         "twin_silent": not _serious(twin),
                         "program_error": type(bug.error).__name__ if bug.error else None,
                         "seconds": round(t_bug + t_twin, 3)})
        for h in healthy:
            steps = h.test_steps if quick else h.steps
            run, t = _run(lambda: h.run(steps, **options))
            rows.append({"kind": "healthy", "mode": mode, "name": h.name, "steps": steps,
                         "findings": _serious(run), "silent": not _serious(run),
                         "not_run": run.monitor.summary()["not_run"], "seconds": round(t, 3)})
    summary = {}
    for mode in MODES:
        rep = [r for r in rows if r["kind"] == "reproduction" and r["mode"] == mode]
        hea = [r for r in rows if r["kind"] == "healthy" and r["mode"] == mode]
        codes = sorted({r["code"] for r in rep})
        codes_hit = sum(all(r["detected"] for r in rep if r["code"] == c) for c in codes)
        summary[mode] = {
            "programs_detected": f"{sum(r['detected'] for r in rep)}/{len(rep)}",
            "codes_detected": f"{codes_hit}/{len(codes)}",
            "twins_silent": f"{sum(r['twin_silent'] for r in rep)}/{len(rep)}",
            "healthy_silent": f"{sum(r['silent'] for r in hea)}/{len(hea)}",
            "false_alarm_programs": [r["name"] for r in rep if not r["twin_silent"]]
            + [r["name"] for r in hea if not r["silent"]],
        }
    return {"summary": summary, "rows": rows}


def _markdown(result: dict[str, Any], quick: bool) -> str:
    lines = ["# Health monitor: recall and false alarms", "",
             ("Quick run (test lengths). " if quick else "")
             + "Reproductions run with their bug (the expected code must appear) and fixed (no "
             "finding of severity warning or worse may appear); healthy programs must stay "
             "silent. 'dense' samples every expensive check (nearly) every step.", "",
             "| mode | programs detected | codes detected | fixed twins silent | healthy silent |",
             "|---|---|---|---|---|"]
    for mode, s in result["summary"].items():
        lines.append(f"| {mode} | {s['programs_detected']} | {s['codes_detected']} | "
                     f"{s['twins_silent']} | {s['healthy_silent']} |")
    for mode in result["summary"]:
        lines += ["", f"## Reproductions ({mode})", "",
                  "| code | program | steps | detected at step | other findings on the bug | "
                  "twin |", "|---|---|---|---|---|---|"]
        for r in result["rows"]:
            if r["kind"] != "reproduction" or r["mode"] != mode:
                continue
            others = ", ".join(f for f in r["bug_findings"] if not f.startswith(r["code"] + "@"))
            twin = "silent" if r["twin_silent"] else ", ".join(r["twin_findings"])
            lines.append(f"| {r['code']} | {r['name']} | {r['steps']} | "
                         f"{r['first_step'] if r['detected'] else 'MISSED'} | {others or '-'} | "
                         f"{twin} |")
        lines += ["", f"## Healthy programs ({mode})", "", "| program | steps | findings |",
                  "|---|---|---|"]
        for r in result["rows"]:
            if r["kind"] == "healthy" and r["mode"] == mode:
                lines.append(f"| {r['name']} | {r['steps']} | "
                             f"{', '.join(r['findings']) or 'none'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/monitor")
    parser.add_argument("--quick", action="store_true", help="test lengths (about 15 s)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default=None, help="run only programs whose code or name "
                        "contains this text")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate(args.quick, args.only)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recall.json").write_text(json.dumps(result, indent=1))
    (out / "recall.md").write_text(_markdown(result, args.quick))
    for mode, s in result["summary"].items():
        print(f"{mode}: detected {s['programs_detected']} programs ({s['codes_detected']} codes), "
              f"twins silent {s['twins_silent']}, healthy silent {s['healthy_silent']}")
    print(f"wrote {out / 'recall.json'} and {out / 'recall.md'}")
    return result


if __name__ == "__main__":
    main()
