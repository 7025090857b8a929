"""``HealthMonitor`` and ``watch``: attach the checks to a model and optimizer, dispatch events.

Why hooks on the optimizer: the usual loop calls ``zero_grad()`` before the monitor sees the
step, so gradients are read in the optimizer's step pre-hook, while they still exist. The
monitor itself does little per step (one float read of the loss and a few counters); every
expensive check is sampled and counts its own cost (see ``summary()["checks"]``).
"""
from __future__ import annotations

import math
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..errors import ConfigError, HealthError, LossError
from .checks import default_checks
from .checks.base import Check, GradSample, StepContext
from .checks.losses import LossInputCheck
from .checks.statistics import StatisticsCheck
from .config import MonitorConfig
from .finding import CODES, SEVERITY_RANK, Finding, HealthWarning, Severity
from .probe import GradProbe
from .report import render_report, render_summary
from .util import norms, user_stacklevel

GateResult = float | tuple[float, Mapping[str, float]]


@dataclass
class UpdateGroup:
    """The trainable parameters one optimizer updates (or the whole model, without one)."""

    index: int
    optimizer: torch.optim.Optimizer | None
    params: list[tuple[str, torch.Tensor]]
    updates: int = 0
    probe: GradProbe | None = None
    skipped: bool = False
    _hooks: list[Any] = field(default_factory=list, repr=False)


class HealthMonitor:
    """Watches a training run and reports silent failures as :class:`Finding` objects.

    Create it with :func:`watch`. Call :meth:`step` once per training step, after the
    backward pass (the optimizer step and ``zero_grad`` may come before or after it).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer
                 | Sequence[torch.optim.Optimizer] | None = None, *,
                 config: MonitorConfig | None = None, **options: Any) -> None:
        if config is None:
            config = MonitorConfig.from_options(**options)
        elif options:
            config = MonitorConfig.from_options(**(config.model_dump() | options))
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"watch: model must be a torch.nn.Module, got "
                              f"{type(model).__name__}")
        self.model = model
        self.config = config
        self.optimizers: list[torch.optim.Optimizer] = _as_optimizers(optimizer)
        _warn_if_watched(model)
        self.should_stop = False
        self.steps = 0
        self.seconds = 0.0  # wall time spent inside the monitor's step() and optimizer hooks
        self._norm_runs, self._norm_seconds = 0, 0.0   # gradient-norm reads (one sync each)
        self.loss_history: deque[float] = deque(maxlen=512)
        self.warmup_losses: list[float] = []
        self._findings: list[Finding] = []
        self._index: dict[tuple[str, str], int] = {}
        self._checks: list[Check] = []
        self._index_events()
        self._closed = False
        self.param_names = _param_names(model, self.optimizers)
        self.groups = self._make_groups()
        for group in self.groups:
            if group.optimizer is not None:
                opt = group.optimizer
                group._hooks = [
                    opt.register_step_pre_hook(lambda o, a, k, g=group: self._before_update(g)),
                    opt.register_step_post_hook(lambda o, a, k, g=group: self._after_update(g))]
        self._stats = StatisticsCheck()
        try:
            for check in default_checks(config):
                self.add_check(check)
            self.add_check(self._stats)
        except BaseException:
            self.close()
            raise
        self._losses = next((c for c in self._checks if isinstance(c, LossInputCheck)), None)
        _WATCHED[model] = weakref.ref(self)

    # ------------------------------------------------------------------ public API
    @property
    def findings(self) -> list[Finding]:
        """Every finding so far, once per code and place, in the order first seen."""
        return list(self._findings)

    @property
    def current_step(self) -> int:
        """The 1-based step in progress (the next ``step()`` call will close it)."""
        return self.steps + 1

    def add_check(self, check: Check) -> Check:
        """Attach a check; every check's events are called in the order they were added."""
        if check.every is not None and check.every not in MonitorConfig.model_fields:
            raise ConfigError(f"add_check: {type(check).__name__}.every = {check.every!r} is "
                              f"not an option; use one of the *_every options or None")
        if any(code not in self.config.disable for code in check.codes) or not check.codes:
            check.attach(self)
            self._checks.append(check)
            self._index_events()
        return check

    def _index_events(self) -> None:
        """Per event, only the checks that override it: a no-op call per step adds up."""
        def overriding(name: str) -> list[Any]:
            return [getattr(c, name) for c in self._checks
                    if getattr(type(c), name) is not getattr(Check, name)]
        cfg = self.config
        self._on_step = [(c.on_step, getattr(cfg, c.every) if c.every else 1, c.first_steps,
                          c.only_non_finite) for c in self._checks
                         if type(c).on_step is not Check.on_step and c.active()]
        self._on_before = overriding("on_before_update")
        self._on_grads = overriding("on_grads")
        self._on_after = overriding("on_after_update")

    def track(self, name: str, fn: Callable[[], float], *, expect_moving: bool = True) -> None:
        """Read ``fn()`` every ``track_every`` steps; report it if it never moves while the
        loss does (``stale-statistic``) or if it becomes NaN/Inf. Pass
        ``expect_moving=False`` for values that may legitimately stay constant."""
        self._stats.track(name, fn, expect_moving=expect_moving)
        self._index_events()

    def gate(self, name: str, score_fn: Callable[[], GateResult] | None, threshold: float, *,
             weights: Mapping[str, float] | None = None) -> None:
        """Register a gate that opens when its score reaches ``threshold``.

        ``score_fn()`` returns the score, or ``(score, contributions)`` where contributions
        maps each component to its weighted share of the score. ``weights`` (each component's
        largest possible contribution) lets the report name the component that held the gate
        back. With ``score_fn=None`` push scores with :meth:`gate_observe`.
        """
        self._stats.gate(name, score_fn, threshold, weights=weights)
        self._index_events()

    def gate_observe(self, name: str, score: float, components: Mapping[str, float]
                     | None = None, *, threshold: float | None = None,
                     weights: Mapping[str, float] | None = None) -> None:
        """Push a gate score the caller already computed (registers the gate on first use)."""
        self._stats.observe(name, score, components, threshold=threshold, weights=weights)

    def step(self, loss: torch.Tensor | float, components: Mapping[str, Any] | None = None,
             outputs: Any = None, targets: Any = None, *, backward: bool = True) -> None:
        """Close one training step. ``backward=False`` says no backward ran on it."""
        t0 = time.perf_counter()
        step = self.steps + 1
        value = _loss_value(loss)
        if self._losses is not None:
            self._losses.make_current()
        ctx = StepContext(step, loss if isinstance(loss, torch.Tensor) else None, value,
                          components, outputs, targets, backward)
        if not self.optimizers and backward and not self._closed:
            self._before_update(self.groups[0])
            self._after_update(self.groups[0])
        finite = math.isfinite(value)
        for on_step, every, first, only_non_finite in self._on_step:
            if (step % every == 0 or step <= first) and not (finite and only_non_finite):
                on_step(ctx)
        self.loss_history.append(value)
        if len(self.warmup_losses) < self.config.warmup_steps and math.isfinite(value):
            self.warmup_losses.append(value)
        self.steps = step
        self.seconds += time.perf_counter() - t0

    def emit(self, code: str, where: str, observed: str, expected: str, message: str,
             suggestion: str, *, severity: Severity | None = None,
             step: int | None = None) -> Finding | None:
        """Record a finding and apply the policy. Repeats of code+where only raise the count."""
        if code in self.config.disable:
            return None
        key = (code, where)
        if key in self._index:
            i = self._index[key]
            self._findings[i] = replace(self._findings[i], count=self._findings[i].count + 1)
            return self._findings[i]
        sev = severity or (CODES[code].severity if code in CODES else "warning")
        finding = Finding(code, sev, step if step is not None else self.current_step, where,
                          observed, expected, message, suggestion)
        self._index[key] = len(self._findings)
        self._findings.append(finding)
        if SEVERITY_RANK[sev] >= SEVERITY_RANK["warning"]:
            policy = self.config.policy
            if policy == "raise":
                raise HealthError(finding)
            if policy == "stop":
                self.should_stop = True
            else:
                warnings.warn(str(finding), HealthWarning, stacklevel=user_stacklevel())
        return finding

    def has(self, code: str, step: int | None = None) -> bool:
        """True if a finding with this code was recorded (first seen at ``step``, if given)."""
        return any(f.code == code and (step is None or f.step == step) for f in self._findings)

    def report(self) -> str:
        """Plain-text end-of-run summary: findings grouped by severity, with their numbers."""
        return render_report(self)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (findings, counts, per-check cost) for logs."""
        return render_summary(self)

    @property
    def checks(self) -> list[Check]:
        return list(self._checks)

    def close(self) -> None:
        """Detach every hook and undo every patch; findings stay readable."""
        if self._closed:
            return
        self._closed = True
        for check in reversed(self._checks):
            check.close()
        for group in self.groups:
            for h in group._hooks:
                h.remove()
            group._hooks = []
            if group.probe is not None:
                group.probe.remove()
                group.probe = None

    def __enter__(self) -> "HealthMonitor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ update events
    def _make_groups(self) -> list[UpdateGroup]:
        if not self.optimizers:
            params = [(self.param_names[id(p)], p) for p in _unique(self.model.parameters())
                      if p.requires_grad]
            return [UpdateGroup(0, None, params)]
        groups = []
        for i, opt in enumerate(self.optimizers):
            ps = _unique(p for g in opt.param_groups for p in g["params"])
            groups.append(UpdateGroup(i, opt, [(self.param_names[id(p)], p) for p in ps
                                               if p.requires_grad]))
        return groups

    def _before_update(self, group: UpdateGroup) -> None:
        t0 = time.perf_counter()
        try:
            self._dispatch_before(group)
        finally:
            self.seconds += time.perf_counter() - t0

    def _dispatch_before(self, group: UpdateGroup) -> None:
        if group.probe is None:
            group.probe = _make_probe(group)
            group.skipped = group.probe is None
        else:
            # No backward reached the model since the last update: nothing fresh to check.
            group.skipped = not group.probe.backward_seen
        if group.skipped:
            return
        for on_before in self._on_before:
            on_before(group)
        n = group.updates + 1
        cfg = self.config
        warm = n <= cfg.warmup_steps
        if warm or n % cfg.grad_every == 0:
            named = [(name, p) for name, p in group.params if p.grad is not None]
            if named:
                t0 = time.perf_counter()
                values = norms([p.grad for _, p in named])
                self._norm_runs += 1
                self._norm_seconds += time.perf_counter() - t0
                sample = GradSample(self.current_step, group.index, n, warm,
                                    [name for name, _ in named], values, [p for _, p in named])
                for on_grads in self._on_grads:
                    on_grads(sample)

    def _after_update(self, group: UpdateGroup) -> None:
        t0 = time.perf_counter()
        group.updates += 1
        if not group.skipped:
            for on_after in self._on_after:
                on_after(group)
        if group.probe is not None:
            group.probe.start_cycle()
        self.seconds += time.perf_counter() - t0


def watch(model: torch.nn.Module, optimizer: torch.optim.Optimizer
          | Sequence[torch.optim.Optimizer] | None = None, policy: str = "warn",
          **options: Any) -> HealthMonitor:
    """Attach a :class:`HealthMonitor` to ``model`` (and its optimizer(s)).

    ``policy``: "warn" (HealthWarning), "raise" (HealthError for warnings and errors) or
    "stop" (sets ``monitor.should_stop``). Other options are :class:`MonitorConfig` fields;
    an unknown one is a ``ConfigError`` listing the valid names. Use it as a context manager
    or call ``close()`` to remove every hook.
    """
    return HealthMonitor(model, optimizer, config=MonitorConfig.from_options(policy=policy,
                                                                              **options))


# ---------------------------------------------------------------------- internals
#: The newest monitor of each model, weakly held both ways (a monitor holds its model).
_WATCHED: "weakref.WeakKeyDictionary[torch.nn.Module, weakref.ref[HealthMonitor]]" = (
    weakref.WeakKeyDictionary())


def _warn_if_watched(model: torch.nn.Module) -> None:
    """A second open monitor on one model silently splits the findings: the loss functions'
    shape checks report to the newest monitor only."""
    ref = _WATCHED.get(model)
    old = ref() if ref is not None else None
    if old is not None and not old._closed:
        warnings.warn("watch: this model already has an open health monitor (HybridTrainer "
                      "attaches one unless monitor=False); the loss-shape findings reach only "
                      "the newest one. Close the other first, or read trainer.monitor instead "
                      "of calling watch() again", HealthWarning, stacklevel=user_stacklevel())


def _as_optimizers(optimizer: Any) -> list[torch.optim.Optimizer]:
    if optimizer is None:
        return []
    opts = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
    for o in opts:
        if not isinstance(o, torch.optim.Optimizer):
            raise ConfigError(f"watch: optimizer must be a torch.optim.Optimizer (or a list of "
                              f"them), got {type(o).__name__}")
    return opts


def _unique(params: Any) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def _param_names(model: torch.nn.Module, optimizers: list[torch.optim.Optimizer]
                 ) -> dict[int, str]:
    names = {id(p): n for n, p in model.named_parameters()}
    for i, opt in enumerate(optimizers):
        for g, group in enumerate(opt.param_groups):
            for j, p in enumerate(group["params"]):
                names.setdefault(id(p), f"optimizer[{i}].param_groups[{g}][{j}] "
                                        f"(shape {tuple(p.shape)})")
    return names


def _make_probe(group: UpdateGroup) -> GradProbe | None:
    """The smallest parameter that has a gradient now: cheap to watch and surely in use."""
    live = [(p.numel(), i) for i, (_, p) in enumerate(group.params) if p.grad is not None]
    if not live:
        return None
    _, i = min(live)
    name, p = group.params[i]
    return GradProbe(p, name)


def _loss_value(loss: Any) -> float:
    if isinstance(loss, torch.Tensor):
        try:
            return loss.item()  # the monitor's one sync per step
        except RuntimeError:
            raise LossError(f"monitor.step: loss must be a scalar, got a tensor of shape "
                            f"{tuple(loss.shape)}; pass loss.mean() or the reduced loss"
                            ) from None
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise LossError(f"monitor.step: loss must be a number or a scalar tensor, got "
                        f"{type(loss).__name__}") from None
