"""The built-in health checks, one module per failure family.

``default_checks`` builds the set ``watch()`` attaches. Rank collapse is only built when
``watch_layers`` names layers; user statistics and gates are attached by the monitor itself.
"""
from __future__ import annotations

from ..config import MonitorConfig
from .base import Check, GradSample, StepContext
from .gradients import GradientScaleCheck
from .graph import GraphCheck
from .losses import LossInputCheck
from .numerics import NonFiniteCheck
from .optimizer import OptimizerCoverageCheck, UpdateCheck, ZeroGradCheck
from .outputs import OutputCollapseCheck
from .representations import RankCollapseCheck
from .terms import TermDominanceCheck


def default_checks(config: MonitorConfig) -> list[Check]:
    """The built-in checks for this configuration, cheapest first."""
    checks: list[Check] = [NonFiniteCheck(), OptimizerCoverageCheck(), ZeroGradCheck(),
                           GradientScaleCheck(), LossInputCheck(), TermDominanceCheck(),
                           OutputCollapseCheck(), UpdateCheck(), GraphCheck()]
    if config.watch_layers:
        checks.append(RankCollapseCheck())
    return checks


__all__ = ["Check", "GradSample", "StepContext", "default_checks"]
