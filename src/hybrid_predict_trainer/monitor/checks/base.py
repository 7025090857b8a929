"""The ``Check`` interface and the records the monitor hands to checks.

Why a tiny base class instead of one big monitor: each failure family (gradients, losses,
outputs, ...) lives in its own module with its own state, the monitor only dispatches events,
and users can plug their own checks in with ``monitor.add_check(check)``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import torch

if TYPE_CHECKING:  # pragma: no cover
    from ..core import HealthMonitor, UpdateGroup


@dataclass(slots=True)
class StepContext:
    """What ``monitor.step`` was told about one training step.

    ``loss`` is the tensor passed in (its graph, if any, is intact); ``loss_value`` its float
    value; ``backward`` is False on steps where no backward ran (e.g. predicted steps).
    """

    step: int
    loss: torch.Tensor | None
    loss_value: float
    components: Mapping[str, Any] | None
    outputs: Any
    targets: Any
    backward: bool


@dataclass
class GradSample:
    """Gradient norms of one update group, read just before its optimizer step.

    ``names`` and ``norms`` cover the parameters that had a gradient; ``update`` is the
    1-based index of the update in this group; ``warmup`` is True while baselines form.
    """

    step: int
    group: int
    update: int
    warmup: bool
    names: list[str]
    norms: list[float]
    params: list[torch.Tensor] = field(repr=False, default_factory=list)


class Check:
    """Base class of a health check. Override the events you need; all default to no-ops.

    ``attach`` is called once by ``monitor.add_check``; ``close`` must undo every hook or patch
    the check installed. ``runs``/``seconds`` count the expensive part of the check, which
    ``summary()`` reports so users can see what the monitor cost.
    """

    name: str = "check"
    codes: tuple[str, ...] = ()
    # Scheduling of on_step, applied by the monitor so that idle steps cost no call at all:
    # ``every`` names the config field holding the interval (None: every step), the first
    # ``first_steps`` steps always run, and ``only_non_finite`` runs it only on a NaN/Inf loss.
    every: str | None = None
    first_steps: int = 0
    only_non_finite: bool = False

    def __init__(self) -> None:
        self.monitor: HealthMonitor | None = None
        self.runs = 0
        self.seconds = 0.0

    def attach(self, monitor: "HealthMonitor") -> None:
        self.monitor = monitor

    def on_step(self, ctx: StepContext) -> None:
        """After each ``monitor.step`` call."""

    def on_before_update(self, group: "UpdateGroup") -> None:
        """Just before an optimizer step (gradients are present)."""

    def on_grads(self, sample: GradSample) -> None:
        """On sampled updates, with the gradient norms of the group."""

    def on_after_update(self, group: "UpdateGroup") -> None:
        """Just after an optimizer step."""

    def active(self) -> bool:
        """False while the check has nothing to do on steps (it is then not scheduled)."""
        return True

    def not_run(self) -> list[str]:
        """Configured work that never happened, for the end-of-run report (failure case H)."""
        return []

    def close(self) -> None:
        """Remove every hook and patch this check installed."""

    def enabled(self, code: str) -> bool:
        return self.monitor is not None and code not in self.monitor.config.disable

    def timed(self) -> "_Timer":
        """``with self.timed(): ...`` around the expensive part of the check."""
        return _Timer(self)


class _Timer:
    __slots__ = ("check", "t0")

    def __init__(self, check: Check) -> None:
        self.check = check
        self.t0 = 0.0

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.check.runs += 1
        self.check.seconds += time.perf_counter() - self.t0
