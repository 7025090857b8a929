"""The trainable parameters seen as one flat vector.

Why: predictors, snapshots and rollbacks all reason about "the weights" as a single vector.
Keeping flat buffers (rather than per-tensor dicts) makes a snapshot one allocation, a
rollback one fused copy, and lets predictors use plain vector algebra. The parameters
themselves are never re-pointed into a buffer (as ``vector_to_parameters`` would do), so the
optimizer's state, DDP's hooks and the user's references stay valid.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from .errors import ConfigError


class FlatParams:
    """Copies between a list of parameters and flat 1-D buffers, with fused ops when possible."""

    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self.params: list[torch.Tensor] = list(params)
        if not self.params:
            raise ConfigError("model: no trainable parameters (every parameter has "
                              "requires_grad=False or none is in the optimizer); unfreeze at "
                              "least one parameter")
        devices = {p.device for p in self.params}
        if len(devices) > 1:
            raise ConfigError(f"model: trainable parameters live on several devices {devices}; "
                              "move the model to one device (model parallel is not supported)")
        self.device = self.params[0].device
        dtypes = {p.dtype for p in self.params}
        # mixed dtypes: buffers in the widest, so a copy (jump, undo, snapshot) never rounds
        # a float64 parameter to float32
        widest = self.params[0].dtype
        for d in dtypes:
            widest = torch.promote_types(widest, d)
        self.dtype = widest if widest.is_floating_point else torch.float32
        self._fused = len(dtypes) == 1
        # the common case, checked once: one float32 dtype on the CPU (see grad_norm)
        self._cpu_f32 = (self._fused and self.dtype == torch.float32
                         and self.device.type == "cpu")
        self.sizes = [p.numel() for p in self.params]
        self.numel = sum(self.sizes)
        self._views_cache: dict[int, list[torch.Tensor]] = {}
        self._found: torch.Tensor | None = None   # grads_finite's flag, zero while all finite
        self._one: torch.Tensor | None = None

    # -- buffers ---------------------------------------------------------------------------
    def new_buffer(self) -> torch.Tensor:
        return torch.empty(self.numel, dtype=self.dtype, device=self.device)

    def views(self, buf: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views into ``buf`` (cached per buffer; buffers are long-lived)."""
        key = buf.data_ptr()
        cached = self._views_cache.get(key)
        if cached is None or cached[0].data_ptr() != key:
            cached = [v.view_as(p) for v, p in zip(buf.split(self.sizes), self.params)]
            self._views_cache[key] = cached
        return cached

    def forget(self, buf: torch.Tensor) -> None:
        self._views_cache.pop(buf.data_ptr(), None)

    # -- copies and in-place arithmetic ----------------------------------------------------
    @torch.no_grad()
    def read_into(self, buf: torch.Tensor) -> torch.Tensor:
        """buf <- parameters."""
        views = self.views(buf)
        if self._fused:
            torch._foreach_copy_(views, self.params)
        else:
            for v, p in zip(views, self.params):
                v.copy_(p)
        return buf

    def flatten(self) -> torch.Tensor:
        """A fresh flat copy of the parameters."""
        return self.read_into(self.new_buffer())

    @torch.no_grad()
    def write_from(self, buf: torch.Tensor) -> None:
        """parameters <- buf (exact copy: used by rollback)."""
        views = self.views(buf)
        if self._fused:
            torch._foreach_copy_(self.params, views)
        else:
            for v, p in zip(views, self.params):
                p.copy_(v)

    @torch.no_grad()
    def add_(self, delta: torch.Tensor, alpha: float = 1.0) -> None:
        """parameters += alpha * delta. This is how a predicted update reaches the weights."""
        views = self.views(delta)
        if self._fused:
            torch._foreach_add_(self.params, views, alpha=alpha)
        else:
            for v, p in zip(views, self.params):
                p.add_(v.to(p.dtype), alpha=alpha)

    @torch.no_grad()
    def diff_into(self, out: torch.Tensor, before: torch.Tensor) -> torch.Tensor:
        """out <- parameters - before (the update an optimizer step made)."""
        out_v = self.views(out)
        if self._fused:
            torch._foreach_copy_(out_v, self.params)
            torch._foreach_sub_(out_v, self.views(before))
        else:
            for o, p, b in zip(out_v, self.params, self.views(before)):
                o.copy_(p).sub_(b)
        return out

    def grad_norm(self) -> torch.Tensor | float:
        """Global L2 norm of the gradients: a float on CPU, a 0-d tensor elsewhere (one host
        sync when the caller reads it, not one per parameter). No ``no_grad`` scope: the
        gradients of an ordinary backward carry no graph, and entering and leaving the scope
        added about a third to this check's cost on a small model."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        try:
            # a gradient always has its parameter's dtype, so the parameters' dtype decides
            if self._cpu_f32:
                # per-tensor reads are free on CPU; stacking and a second norm are not (they
                # were half of this check's cost on a small model)
                return math.sqrt(math.fsum(float(n) ** 2 for n in torch._foreach_norm(grads)))
            if self._fused and self.dtype == torch.float32:
                return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        except (NotImplementedError, RuntimeError):
            # a sparse gradient (nn.Embedding(sparse=True)) has no fused norm: the general
            # path below reads its stored values instead
            pass
        # mixed or other precisions: each norm in at least float32 (a half norm overflows early)
        return torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(g, dtype=torch.promote_types(g.dtype, torch.float32))
             for g in map(dense_values, grads)]).double())

    def grads_finite(self) -> bool | None:
        """True when every gradient is finite, in one fused pass and one host sync; None
        where that pass does not apply (a sparse gradient, a device without it): the caller
        then takes :meth:`grad_norm`. Why: it costs less than half the norm's per-tensor
        passes on a small model, for the check that must run on every step.

        The pass is the one ``torch.amp.GradScaler`` uses; it multiplies each gradient by an
        unscale factor, here exactly 1.0, which leaves every value as it is."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return True
        if self._found is None or self._one is None:
            self._found = torch.zeros(1, device=self.device)
            self._one = torch.ones(1, device=self.device)
        try:
            torch._amp_foreach_non_finite_check_and_unscale_(grads, self._found, self._one)
        except (RuntimeError, NotImplementedError, TypeError):
            return None
        if not self._found.item():
            return True
        self._found.zero_()   # the pass only ever sets the flag
        return False

    @torch.no_grad()
    def grad_dot(self, to: torch.Tensor, frm: torch.Tensor) -> float:
        """gradient . (to - frm): the loss's slope along the line from ``frm`` to ``to`` (per
        unit of its parameter), one pass and one host sync."""
        dots = [(_dense(p.grad).to(a.dtype) * (a - b)).sum(dtype=torch.float64)
                for p, a, b in zip(self.params, self.views(to), self.views(frm))
                if p.grad is not None]
        return float(torch.stack(dots).sum()) if dots else 0.0

    @torch.no_grad()
    def all_finite(self) -> bool:
        """True when every parameter is finite (one host sync)."""
        flags = [torch.isfinite(p).all() for p in self.params]
        return bool(torch.stack(flags).all())

    def first_nonfinite(self, named: dict[int, str]) -> str | None:
        """Name of the first parameter holding NaN/Inf, for error messages."""
        for p in self.params:
            if not torch.isfinite(p).all():
                return named.get(id(p), "<unnamed parameter>")
        return None


def dense_values(grad: torch.Tensor) -> torch.Tensor:
    """The values whose norm is a sparse gradient's norm (a dense gradient itself).

    Why: an ``nn.Embedding(sparse=True)`` gradient is a sparse COO tensor, which the norm and
    finiteness kernels do not take; its coalesced values have the same norm and the same
    NaN/Inf (coalescing sums repeated indices, as the dense gradient would)."""
    if grad.layout == torch.strided:
        return grad
    if grad.layout == torch.sparse_coo:
        return grad.coalesce().values()
    return grad.values()   # compressed layouts (CSR, CSC, BSR, BSC) store each value once


def _dense(grad: torch.Tensor) -> torch.Tensor:
    return grad if grad.layout == torch.strided else grad.to_dense()
