"""Optimizer wiring: ``params-not-in-optimizer``, ``params-not-updated``, ``missing-zero-grad``.

Why these three: they are the classic user-code errors that leave the loss curve looking
plausible. Parameters left out of the optimizer are found once, at ``watch`` time. Parameters
that never change are found by comparing up to 4096 evenly spaced values of each trainable
parameter with a snapshot taken at ``watch`` time, every ``update_every`` steps; a parameter
drops out of the comparison the first time it changes, so a healthy run pays for one
comparison. Parameters frozen with ``requires_grad=False`` are never watched. Missing
``zero_grad`` is read from the gradient probe (two hooks, no sync): an update whose backward
added to a gradient nobody reset since the previous update.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Check, StepContext

_SAMPLE = 4096


def _fingerprint(p: torch.Tensor) -> torch.Tensor:
    flat = p.detach().reshape(-1)
    stride = max(1, flat.numel() // _SAMPLE)
    return flat[::stride][:_SAMPLE].clone()


class OptimizerCoverageCheck(Check):
    """Trainable model parameters that no watched optimizer updates."""

    name = "optimizer-coverage"
    codes = ("params-not-in-optimizer",)

    def attach(self, monitor: Any) -> None:
        super().attach(monitor)
        if not monitor.optimizers:
            return
        covered = {id(p) for g in monitor.groups for _, p in g.params}
        missing = [(n, p) for n, p in monitor.model.named_parameters()
                   if p.requires_grad and id(p) not in covered]
        if not missing:
            return
        total = sum(p.numel() for p in monitor.model.parameters() if p.requires_grad)
        names = ", ".join(n for n, _ in missing[:5]) + (" ..." if len(missing) > 5 else "")
        count = sum(p.numel() for _, p in missing)
        monitor.emit(
            "params-not-in-optimizer", f"parameter '{missing[0][0]}'",
            observed=f"{len(missing)} trainable tensors ({count:,} of {total:,} values) are in "
                     f"no optimizer: {names}",
            expected="every parameter with requires_grad=True in an optimizer",
            message="some trainable parameters are not in any optimizer's param_groups, so "
                    "they get gradients but are never updated (often a layer added after the "
                    "optimizer was built).",
            suggestion="build the optimizer after the model is complete (or add them with "
                       "optimizer.add_param_group); if they are meant to stay fixed, set "
                       "requires_grad=False on them.")


class UpdateCheck(Check):
    """Trainable, optimized parameters that never change."""

    name = "updates"
    codes = ("params-not-updated",)
    every = "update_every"

    def __init__(self) -> None:
        super().__init__()
        self._snap: dict[int, tuple[str, torch.Tensor, torch.Tensor, Any]] = {}

    def attach(self, monitor: Any) -> None:
        super().attach(monitor)
        with self.timed():
            for group in monitor.groups:
                for name, p in group.params:
                    if p.requires_grad and id(p) not in self._snap:
                        self._snap[id(p)] = (name, p, _fingerprint(p), group)

    def on_step(self, ctx: StepContext) -> None:
        if not self._snap:
            return
        with self.timed():
            items = list(self._snap.items())
            changed = torch.stack([(_fingerprint(p) != snap).any()
                                   for _, (_, p, snap, _) in items]).tolist()
            for (key, _), moved in zip(items, changed):
                if moved:
                    del self._snap[key]
        patience = self.monitor.config.update_patience
        stuck = [(name, group) for name, _, _, group in self._snap.values()
                 if group.updates >= patience]
        if not stuck:
            return
        name, group = stuck[0]
        names = ", ".join(n for n, _ in stuck[:5]) + (" ..." if len(stuck) > 5 else "")
        self.monitor.emit(
            "params-not-updated", f"parameter '{name}'",
            observed=f"{len(stuck)} trainable tensors unchanged after {group.updates} "
                     f"optimizer steps: {names}",
            expected="every parameter with requires_grad=True to change",
            message="these parameters require gradients and are in the optimizer, yet they "
                    "never changed: no gradient reaches them (a torch.no_grad() block or a "
                    ".detach() upstream, an unused layer) or their learning rate is 0.",
            suggestion="check the forward pass for no_grad/detach around these layers and "
                       "the learning rate of their param group; if they are meant to be "
                       "frozen, set requires_grad=False.")

    def close(self) -> None:
        self._snap.clear()


class ZeroGradCheck(Check):
    """Gradients that nobody reset between optimizer steps."""

    name = "zero-grad"
    codes = ("missing-zero-grad",)

    def __init__(self) -> None:
        super().__init__()
        self._missing: dict[int, int] = {}

    def on_before_update(self, group: Any) -> None:
        probe = group.probe
        if probe is None or not probe.backward_seen:
            return
        n = 0 if probe.reset_seen else self._missing.get(group.index, 0) + 1
        self._missing[group.index] = n
        k = self.monitor.config.accumulation_steps
        if n < k:
            return
        unit = "optimizer steps" if group.optimizer is not None else "monitor steps"
        where = (f"optimizer {group.index} gradients" if group.optimizer is not None
                 else "model gradients")
        self.monitor.emit(
            "missing-zero-grad", where,
            observed=f"the gradient of '{probe.name}' was added to, not replaced, for "
                     f"{n} consecutive {unit} (update {group.updates + 1})",
            expected=f"gradients reset at least once every {k} {unit}",
            message="gradients keep accumulating across updates: nothing reset them "
                    "(optimizer.zero_grad() or model.zero_grad()) after the last update, so "
                    "each update applies the sum of all gradients so far.",
            suggestion="call optimizer.zero_grad() once per step; if accumulating over "
                       f"several {unit} is intended, pass accumulation_steps=<n> to watch().")
