"""``non-finite``: NaN or Inf in the loss, the outputs, a gradient or a parameter.

Why name the first tensor: "loss is NaN" says nothing about where to look. The loss is read on
every step anyway (the monitor's one sync); when it is not finite, the outputs, the gradients
still present and the parameters are searched once, in that order, and the first non-finite
tensor is named. Gradients are also checked on every sampled gradient read, which catches a
NaN gradient under a finite loss (e.g. sqrt at 0).
"""
from __future__ import annotations

import math

import torch

from ..util import fmt, named_tensors, norms
from .base import Check, GradSample, StepContext


class NonFiniteCheck(Check):
    """Watches the loss every step and gradients on sampled updates."""

    name = "numerics"
    codes = ("non-finite",)
    only_non_finite = True

    def __init__(self) -> None:
        super().__init__()
        self._searched = False

    def on_step(self, ctx: StepContext) -> None:
        if math.isfinite(ctx.loss_value):
            return
        where, detail, count = "loss", "", ""
        if not self._searched:
            self._searched = True
            with self.timed():
                found = self._first_non_finite(ctx)
            if found:
                where, t = found
                bad = int((~torch.isfinite(t)).sum())
                detail = f"; the first non-finite tensor found is the {where}"
                count = f" ({bad} of {t.numel()} values in the {where} are NaN/Inf)"
        self.monitor.emit(
            "non-finite", where,
            observed=f"loss = {fmt(ctx.loss_value)} at step {ctx.step}{count}",
            expected="finite values",
            message=f"the loss became {fmt(ctx.loss_value)} at step {ctx.step}{detail}. Every "
                    "update from now on is garbage.",
            suggestion="find the operation that first produced it (a division by a zero "
                       "norm or std, a log of 0, an overflow) and guard it with an epsilon or "
                       "a lower learning rate; torch.autograd.detect_anomaly() pinpoints it.")

    def on_grads(self, sample: GradSample) -> None:
        for name, n in zip(sample.names, sample.norms):
            if not math.isfinite(n):
                self.monitor.emit(
                    "non-finite", f"gradient of '{name}'",
                    observed=f"gradient norm {fmt(n)} at update {sample.update}",
                    expected="finite gradients",
                    message=f"the gradient of '{name}' contains NaN or Inf (first tensor, in "
                            "parameter order); the optimizer is about to write it into the "
                            "weights.",
                    suggestion="guard the operation that produces it (sqrt or norm at 0, log "
                               "of 0, division by a zero std) or clip/skip non-finite "
                               "gradients.")
                return

    def _first_non_finite(self, ctx: StepContext) -> tuple[str, torch.Tensor] | None:
        named = [(n, t.detach()) for n, t in named_tensors(ctx.outputs, "outputs")
                 if t.is_floating_point()]
        seen: set[int] = set()
        for group in self.monitor.groups:
            for name, p in group.params:
                if p.grad is not None and id(p.grad) not in seen and p.grad.is_floating_point():
                    seen.add(id(p.grad))
                    named.append((f"gradient of '{name}'", p.grad))
        for group in self.monitor.groups:
            for name, p in group.params:
                if id(p) not in seen and p.is_floating_point():
                    seen.add(id(p))
                    named.append((f"parameter '{name}'", p.detach()))
        if not named:
            return None
        values = norms([t.float() if t.dtype != torch.float32 else t for _, t in named])
        for (name, t), v in zip(named, values):
            if not math.isfinite(v):
                return name, t
        return None
