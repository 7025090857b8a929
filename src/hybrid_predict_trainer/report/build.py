"""``hpt report PATH``: decide what PATH is, draw the figures, write the HTML page.

A run folder (``metrics.jsonl`` from ``hpt train``) or a metrics ``.jsonl`` file (a
``HybridConfig.metrics_path``) gives the run report; a folder with ``report.json`` gives the
benchmark comparison.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import html as H
from .bench import COLUMNS, bench_figures, method_rows, read_bench
from .runlog import RunLog, read_run


@dataclass
class ReportFiles:
    """The page and the PNGs written (``kind`` is 'run' or 'benchmark')."""

    kind: str
    html: Path
    pngs: list[Path] = field(default_factory=list)


def build_report(path: str | Path, out: str | Path | None = None) -> ReportFiles:
    """Write ``report.html`` and the PNGs into ``out`` (default: PATH/hpt-report)."""
    src = Path(path)
    if not src.exists():
        raise ConfigError(f"report: '{src}' does not exist; pass a run folder (hpt train), a "
                          "metrics .jsonl file or a benchmark results folder")
    folder = src if src.is_dir() else src.parent
    dest = Path(out) if out is not None else folder / "hpt-report"
    if src.is_dir() and (src / "report.json").is_file() and not (src / "metrics.jsonl").is_file():
        data = read_bench(src)
        dest.mkdir(parents=True, exist_ok=True)
        return _benchmark(src, data, dest)
    log = read_run(src)
    dest.mkdir(parents=True, exist_ok=True)
    return _run(log, dest)


def _run(log: RunLog, dest: Path) -> ReportFiles:
    from .figures import run_figures

    figs = run_figures(log, dest)
    s = log.summary or {}
    n = len(log.steps)
    backward = sum(1 for r in log.steps if r.get("backward"))
    predicted = sum(1 for r in log.steps if r.get("predicted"))
    wall = sum(float(r.get("wall_s") or 0.0) for r in log.steps)
    figures_rows = [
        ("steps", n), ("backward passes", backward),
        ("backward passes saved", f"{n - backward} ({100 * (n - backward) / max(n, 1):.0f}%)"),
        ("predicted steps", f"{predicted} ({100 * predicted / max(n, 1):.0f}%)"),
        ("segments", s.get("segments", "-")), ("rollbacks", s.get("rollbacks", sum(
            1 for r in log.steps if r.get("rolled_back")))),
        ("trainer step time, s", f"{wall:.2f}"),
        ("speed-up estimate (wall)", _fmt(s.get("speedup_estimate"), ".2f", "x")),
        ("final validation loss", _fmt(log.evals[-1]["val_loss"] if log.evals else None,
                                       ".4f")),
        ("status", s.get("status", "-")),
    ]
    if s.get("never_predicted_reason"):
        figures_rows.append(("never predicted", s["never_predicted_reason"]))
    if s.get("auto_off"):
        figures_rows.append(("auto-off", s["auto_off"]))
    sections = [("Summary", H.table(["figure", "value"], figures_rows))]
    sections += [(title, H.image(p, title)) for title, p in figs.items()]
    sections.append(("Health monitor findings", _findings(log)))
    if log.health_text:
        sections.append(("Health report (text)", H.pre(log.health_text)))
    sections.append(("Phase changes and jump pauses, with their reasons", _transitions(log)))
    sections.append(("Hybrid settings", H.table(
        ["setting", "value"], sorted((k, v) for k, v in log.config.items()))))
    page = H.page(f"hpt report: {log.source.name}",
                  f"{n} steps; generated {time.strftime('%Y-%m-%d %H:%M')}", sections)
    html_path = dest / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return ReportFiles("run", html_path, list(figs.values()))


def _findings(log: RunLog) -> str:
    findings = log.findings
    if not findings:
        health = (log.summary or {}).get("health")
        return ("<p>No findings: the monitor saw no problem.</p>" if health
                else "<p class=\"muted\">The health monitor was off or its summary is "
                     "missing (run with [hybrid] monitor = true).</p>")
    rows = [[H.Raw(f"<span class=\"sev-{H.esc(f.get('severity'))}\">"
                   f"{H.esc(f.get('severity'))}</span>"), f.get("code"), f.get("step"),
             f.get("where"), f.get("message"), f"observed {f.get('observed')}; expected "
             f"{f.get('expected')}", f.get("suggestion"), f.get("count", 1)]
            for f in findings]
    return H.table(["severity", "code", "step", "where", "message", "numbers", "suggestion",
                    "times"], rows, numeric=False)


def _transitions(log: RunLog, limit: int = 300) -> str:
    tr = sorted(log.transitions + log.events, key=lambda e: e[0])
    if not tr:
        return "<p class=\"muted\">No phase changes were logged.</p>"
    rows = [[step, text.removeprefix(f"step {step}: ")] for step, text in tr[:limit]]
    more = (f"<p class=\"muted\">... and {len(tr) - limit} more in metrics.jsonl.</p>"
            if len(tr) > limit else "")
    return H.table(["step", "transition"], rows, numeric=False) + more


def _benchmark(folder: Path, data: dict[str, Any], dest: Path) -> ReportFiles:
    figs = bench_figures(data, dest)
    m = data.get("machine", {})
    sections: list[tuple[str, str]] = []
    if "Speed-ups" in figs:
        sections.append(("Speed-ups", H.image(figs["Speed-ups"], "Speed-ups")))
    for name, w in data["workloads"].items():
        if w.get("skipped"):
            sections.append((name, f"<p>Skipped: {H.esc(w['skipped'])}</p>"))
            continue
        body = [f"<p>{H.esc(w.get('description', ''))}</p>",
                H.table(COLUMNS, method_rows(w))]
        for title, p in figs.items():
            if title.startswith(f"{name}:"):
                body.append(H.image(p, title))
        sections.append((name, "\n".join(body)))
    subtitle = (f"{data.get('command', 'benchmark')}; {m.get('cpu_model', '?')}, torch "
                f"{m.get('torch', '?')}, {m.get('threads', '?')} threads; {m.get('time', '')}")
    page = H.page(f"Benchmark comparison: {folder.name}", subtitle, sections)
    html_path = dest / "report.html"
    html_path.write_text(page, encoding="utf-8")
    return ReportFiles("benchmark", html_path, list(figs.values()))


def _fmt(v: Any, fmt: str, suffix: str = "") -> str:
    return "-" if v is None else f"{format(v, fmt)}{suffix}"
