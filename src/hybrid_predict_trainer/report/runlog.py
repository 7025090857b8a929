"""Reading a run back: the metrics JSONL (deduplicated across resumes), summary and health.

Why deduplicate: a run killed without Ctrl-C may have logged steps after its last
checkpoint; the resumed run trains those steps again. Each ``resume`` record says from which
step the log continues, so the earlier copies of later steps are dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import HybridConfig
from ..errors import ConfigError


@dataclass
class RunLog:
    """The records of one run, in step order."""

    source: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    health_text: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The hybrid settings of the run (the defaults when the log does not say)."""
        cfg = (self.summary or {}).get("config")
        return cfg if isinstance(cfg, dict) else HybridConfig().model_dump()

    @property
    def findings(self) -> list[dict[str, Any]]:
        health = (self.summary or {}).get("health") or {}
        return list(health.get("findings", []))

    @property
    def transitions(self) -> list[tuple[int, str]]:
        """(step, text) of every phase change, from the step records."""
        return [(int(r["step"]), str(r["transition"])) for r in self.steps if r.get("transition")]

    @property
    def events(self) -> list[tuple[int, str]]:
        """(step, text) of every decision that is no phase change (jumps paused, resumed)."""
        return [(int(r["step"]), str(r["event"])) for r in self.steps if r.get("event")]


def read_run(path: Path) -> RunLog:
    """Read ``path``: a run folder (``metrics.jsonl`` inside) or a metrics ``.jsonl`` file."""
    path = Path(path)
    metrics = path / "metrics.jsonl" if path.is_dir() else path
    if not metrics.is_file():
        raise ConfigError(f"report: '{path}' has no metrics.jsonl; pass a folder written by "
                          "hpt train, a metrics .jsonl file, or a benchmark results folder "
                          "(with report.json)")
    log = RunLog(metrics.parent if path.is_dir() else metrics)
    for line in metrics.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue                  # a line cut off by a crash: the rest is still valid
        kind = rec.get("type")
        if kind == "step":
            log.steps.append(rec)
        elif kind == "eval":
            log.evals.append(rec)
        elif kind == "resume":
            at = int(rec.get("step", 0))
            log.steps = [r for r in log.steps if int(r["step"]) < at]
            log.evals = [r for r in log.evals if int(r["step"]) <= at]
        elif kind == "summary":
            log.summary = rec
    if not log.steps:
        raise ConfigError(f"report: '{metrics}' holds no step records; train first (hpt train)")
    folder = metrics.parent
    summary_file = folder / "summary.json"
    if path.is_dir() and summary_file.is_file():
        try:
            log.summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            pass
    health_file = folder / "health.txt"
    if path.is_dir() and health_file.is_file():
        log.health_text = health_file.read_text(encoding="utf-8").rstrip()
    return log
