"""Loss-input checks: ``loss-broadcast`` and ``loss-on-normalized``.

Why here and not after the fact: a broadcast loss (case G) or a loss on unit-norm vectors
(case C) trains happily and the loss even falls; only the inputs of the loss call show the
mistake. The shape test runs on every call (one tuple comparison); the norm test runs on the
first two steps and then every ``loss_check_every`` steps.
"""
from __future__ import annotations

from typing import Any

import torch

from ..util import call_site, named_tensors, shape
from . import patching
from .base import Check, StepContext

MSE_TYPE = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
_UNIT_TOL = 1e-3


class LossInputCheck(Check):
    """Inspects the inputs of every patched loss call and the outputs/targets given to step."""

    name = "losses"
    codes = ("loss-broadcast", "loss-on-normalized")
    every = "loss_check_every"   # the outputs/targets comparison; loss calls are checked always
    first_steps = 2

    def __init__(self) -> None:
        super().__init__()
        self._installed = False

    def attach(self, monitor: Any) -> None:
        super().attach(monitor)
        cfg = monitor.config
        self._allow_broadcast = cfg.allow_broadcast
        self._check_shapes = not cfg.allow_broadcast and self.enabled("loss-broadcast")
        self._check_norms = not cfg.allow_normalized and self.enabled("loss-on-normalized")
        if self._check_shapes or self._check_norms or self._allow_broadcast:
            patching.add_listener(self)
            self._installed = True

    def make_current(self) -> None:
        """This monitor just stepped: loss calls from now on are its own."""
        if self._installed:
            patching.touch(self)

    def close(self) -> None:
        if self._installed:
            patching.remove_listener(self)
            self._installed = False

    # ------------------------------------------------------------------ events
    def on_loss(self, fn: str, inp: Any, tgt: Any) -> bool:
        """Called by the wrapper on every loss call. True: PyTorch's size warning for this call
        says nothing new (a finding reports it, or ``allow_broadcast`` declared it intended)."""
        if not isinstance(inp, torch.Tensor) or not isinstance(tgt, torch.Tensor):
            return False
        if inp.shape != tgt.shape:
            if self._allow_broadcast:
                return True
            if self._check_shapes:
                self._broadcast(f"{fn} at {call_site()}", fn, inp.shape, tgt.shape)
                return True
        if self._check_norms and fn in MSE_TYPE:
            step = self.monitor.current_step
            if step <= 2 or step % self.monitor.config.loss_check_every == 0:
                self._normalized(fn, inp, tgt)
        return False

    def on_torch_warning(self, input_size: str, target_size: str) -> None:
        """PyTorch's own 'target size ... different to the input size' warning."""
        if not self._check_shapes or self.monitor is None:
            return
        if self.monitor.has("loss-broadcast", self.monitor.current_step):
            return  # the wrapper already reported this call
        inp = torch.Size(int(d) for d in input_size.split(",") if d.strip())
        tgt = torch.Size(int(d) for d in target_size.split(",") if d.strip())
        self._broadcast(f"loss at {call_site()}", "a loss function", inp, tgt)

    def on_step(self, ctx: StepContext) -> None:
        if not self._check_shapes or ctx.outputs is None or ctx.targets is None:
            return
        if isinstance(ctx.outputs, torch.Tensor) and isinstance(ctx.targets, torch.Tensor) \
                and ctx.outputs.shape == ctx.targets.shape:
            return  # the common case, decided without building lists
        if self.monitor.has("loss-broadcast"):  # the loss call already told us
            return
        outs = named_tensors(ctx.outputs, "outputs")
        tgts = dict(named_tensors(ctx.targets, "outputs"))  # same keys as the outputs
        for name, out in outs:
            tgt = tgts.get(name)
            if (tgt is not None and out.is_floating_point() and tgt.is_floating_point()
                    and out.shape != tgt.shape):
                label = name.replace("outputs", "outputs vs targets", 1)
                self._broadcast(label, "the outputs and targets passed to step()", out.shape,
                                tgt.shape, only_expanding=True)

    # ------------------------------------------------------------------ findings
    def _broadcast(self, where: str, what: str, inp: torch.Size, tgt: torch.Size,
                   only_expanding: bool = False) -> None:
        try:
            both = torch.broadcast_shapes(inp, tgt)
        except RuntimeError:
            return  # not broadcastable: PyTorch raises its own error
        expands = both.numel() > max(inp.numel(), tgt.numel())
        if only_expanding and not expands:
            return
        if expands:
            effect = (f"they broadcast to {shape(both)}, so every prediction is "
                      f"compared with every target and the loss measures the wrong thing.")
        else:
            effect = (f"they broadcast to {shape(both)}; PyTorch warns that this "
                      "usually means the shapes were not meant to differ.")
        self.monitor.emit(
            "loss-broadcast", where,
            observed=f"input {shape(inp)} vs target {shape(tgt)} -> "
                     f"{shape(both)}",
            expected="identical shapes",
            message=f"{what} got a prediction of shape {shape(inp)} and a target of "
                    f"shape {shape(tgt)}; {effect}",
            suggestion="make the shapes equal before the loss, e.g. target = "
                       "target.view_as(pred); if the broadcast is intended, pass "
                       "allow_broadcast=True to watch().",
            severity="error" if expands else "warning")

    def _normalized(self, fn: str, inp: torch.Tensor, tgt: torch.Tensor) -> None:
        if (inp.dim() < 2 or inp.shape[-1] < 2 or inp.shape != tgt.shape
                or not inp.is_floating_point() or not tgt.is_floating_point()):
            return
        with self.timed():
            width = inp.shape[-1]
            a = inp.detach().reshape(-1, width)[:256].float()
            b = tgt.detach().reshape(-1, width)[:256].float()
            dev = torch.stack([(torch.linalg.vector_norm(a, dim=1) - 1).abs().max(),
                               (torch.linalg.vector_norm(b, dim=1) - 1).abs().max()]).tolist()
        if max(dev) > _UNIT_TOL:
            return
        self.monitor.emit(
            "loss-on-normalized", f"{fn} at {call_site()}",
            observed=f"every row of both inputs has norm 1 (max deviation {max(dev):.1e}, "
                     f"{a.shape[0]} rows of width {width})",
            expected="raw vectors whose lengths the loss can see",
            message=f"both inputs of {fn} are unit-normalised vectors, so the loss only asks "
                    "their directions to match; their lengths are never trained and the raw "
                    "distance between them can stay large.",
            suggestion=f"compute {fn} on the raw vectors (or add a term on their norms); if "
                       "matching directions is all you want, pass allow_normalized=True.")
