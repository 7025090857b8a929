"""``hpt report PATH``: a self-contained HTML report and its PNG figures."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ..errors import HPTError
from .output import error, say


def report(
    path: Path = typer.Argument(..., help="A run folder (hpt train), a metrics .jsonl file, or "
                                "a benchmark results folder (report.json)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: "
                                       "PATH/hpt-report)."),
) -> None:
    """Write report.html (figures embedded) and the PNGs for a run or a benchmark."""
    console = Console()
    from ..report.build import build_report
    try:
        files = build_report(path, out)
    except HPTError as exc:
        error(console, exc)
        raise typer.Exit(2) from None
    say(console, f"{files.kind} report: {files.html} ({len(files.pngs)} figures)")
