"""Training health monitor: turn silent training failures into explained findings.

    monitor = watch(model, optimizer, policy="warn")
    for x, y in loader:
        ...; loss.backward(); optimizer.step(); optimizer.zero_grad()
        monitor.step(loss, outputs=out, targets=y)
    print(monitor.report())

See docs/monitor.md for every finding code, its cost and how to silence it.
"""
from __future__ import annotations

from .checks.base import Check, GradSample, StepContext
from .config import MonitorConfig
from .core import HealthMonitor, UpdateGroup, watch
from .finding import CODES, Finding, HealthWarning

__all__ = ["watch", "HealthMonitor", "Finding", "HealthWarning", "MonitorConfig", "Check",
           "StepContext", "GradSample", "UpdateGroup", "CODES"]
