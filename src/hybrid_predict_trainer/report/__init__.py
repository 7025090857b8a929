"""``hpt report``: a self-contained HTML report (PNG figures embedded) of a training run or a
benchmark results folder. Plotting needs the ``[report]`` extra (matplotlib), imported only
when a report is built."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .text import run_text_report

if TYPE_CHECKING:  # pragma: no cover
    from .build import ReportFiles

__all__ = ["run_text_report", "build_report"]


def build_report(path: str | Path, out: str | Path | None = None) -> "ReportFiles":
    """Write ``report.html`` and its PNGs for a run folder, a metrics JSONL file or a
    benchmark folder (see :mod:`hybrid_predict_trainer.report.build`)."""
    from .build import build_report as _build
    return _build(path, out)
