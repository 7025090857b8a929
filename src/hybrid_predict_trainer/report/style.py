"""Shared plotting style: the Agg backend (no display needed), phase colours, sizes.

Why shared: the same phase has the same colour in every figure of a report, and every
figure is saved at the same size and resolution.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError

PHASE_COLORS = {"warmup": "#bdbdbd", "full": "#4c72b0", "predict": "#55a868",
                "correct": "#dd8452"}
# a checked jump onto the slow weights, by its verdict (kept: True, undone: False)
JUMP_MARKS = {True: {"marker": "|", "color": "#555555", "ms": 5, "label": "jump kept"},
              False: {"marker": "x", "color": "#d62728", "ms": 4, "label": "jump undone"}}
MAX_POINTS = 4000


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("report: matplotlib is not installed; "
                          "pip install 'hybrid-predict-trainer[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def new_figure(height: float = 4.2, width: float = 9.0) -> tuple[Any, Any]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(alpha=0.3)
    return fig, ax


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def thin(points: Sequence[tuple[float, float]], limit: int = MAX_POINTS
         ) -> list[tuple[float, float]]:
    """Every k-th point so that at most ``limit`` are drawn (long runs stay readable)."""
    pts = list(points)
    if len(pts) <= limit:
        return pts
    k = -(-len(pts) // limit)
    return pts[::k]
