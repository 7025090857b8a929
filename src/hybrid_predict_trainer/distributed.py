"""How the trainer agrees with other processes. Single process: a no-op.

Why a tiny protocol: every phase decision is computed from statistics that first pass
through ``Collective.mean``. Under DDP those statistics are all-reduced, so every rank takes
the same branch and no rank runs a backward (with its gradient all-reduce) that another skips.
"""
from __future__ import annotations

from typing import Protocol, Sequence


class Collective(Protocol):
    """Averages a few floats across processes; returns them in the same order."""

    world_size: int

    def mean(self, values: Sequence[float]) -> list[float]: ...


class LocalCollective:
    """The single-process collective: returns its input."""

    world_size = 1

    def mean(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]
