"""``GradProbe``: learn, without any device sync, what happened to gradients between updates.

Why a probe: reading gradients every step costs a sync per step. One Python hook on one
small parameter tells us, for free, (1) whether a backward reached the model since the last
optimizer step (so gradient checks are skipped on predicted steps), and (2) whether the
gradient had been reset (set to None or zeroed in place) before that backward added to it.
Accumulating into the same tensor bumps its version counter exactly once, so the probe knows
the (tensor identity, version) to expect next; any other value means someone reset it. A wrong
guess (e.g. an out-of-place accumulation) can only hide a finding, never invent one.
"""
from __future__ import annotations

import torch


class GradProbe:
    """A hook on one parameter; ``backward_seen``/``reset_seen`` cover the current cycle."""

    def __init__(self, param: torch.Tensor, name: str) -> None:
        self.param = param
        self.name = name
        self.backward_seen = False
        self.reset_seen = False
        self._sig = self._signature()
        self._handle = param.register_hook(self._before_accumulate)

    def _signature(self) -> tuple[int, int] | None:
        g = self.param.grad
        return None if g is None else (id(g), g._version)

    def _before_accumulate(self, grad: torch.Tensor) -> None:
        self.backward_seen = True
        g = self.param.grad
        if g is None or (id(g), g._version) != self._sig:
            self.reset_seen = True
            self._sig = None  # a new tensor will be created: its identity is not known yet
        else:
            self._sig = (id(g), g._version + 1)  # in-place accumulation bumps the version once

    def start_cycle(self) -> None:
        """Call right after an update: the next cycle starts clean."""
        self.backward_seen = False
        self.reset_seen = False
        self._sig = self._signature()

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
