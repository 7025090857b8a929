"""What ``hpt train`` shows while it runs: a rich progress bar on a terminal, plain lines
otherwise (logs, CI), nothing but the result with ``--quiet``.

Why a hook: it receives the trainer's per-step results like any logger, so the loop itself
knows nothing about display.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn)

from ..metrics import StepResult
from ..integrations.scalars import RunningStats
from .output import say


def describe(stats: RunningStats) -> str:
    """One line: phase, loss, backward passes saved, speed-up estimate."""
    loss = f"{stats.last_loss:.4f}" if stats.last_loss is not None else "-"
    return (f"phase={stats.phase:<8s} loss={loss} saved={stats.backward_saved} backward "
            f"({stats.predicted_steps} predicted) speedup~{stats.speedup_estimate:.2f}x")


class ProgressView:
    """Context manager and metrics hook. ``mode``: 'rich', 'plain' or 'quiet'."""

    def __init__(self, console: Console, stats: RunningStats, total: int | None, mode: str,
                 every: int = 50) -> None:
        self.console, self.stats, self.total, self.mode, self.every = (console, stats, total,
                                                                       mode, every)
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> "ProgressView":
        if self.mode == "rich":
            self._progress = Progress(
                TextColumn("[bold]{task.fields[phase]:<8s}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("saved [green]{task.fields[saved]}[/green] backward"),
                TextColumn("speed-up ~{task.fields[speedup]}x"), TimeElapsedColumn(),
                console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("train", total=self.total,
                                                 completed=self.stats.steps, **self._fields())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, r: StepResult) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=self.stats.steps, **self._fields())
            if r.transition and r.rolled_back:
                say(self._progress.console, r.transition, style="yellow")
            if r.event:
                say(self._progress.console, r.event, style="yellow")
        elif self.mode == "plain" and self.stats.steps % self.every == 0:
            of = f"/{self.total}" if self.total else ""
            say(self.console, f"step {self.stats.steps}{of} {describe(self.stats)}")

    def note(self, message: str) -> None:
        """A line above the bar (or a plain line), except in quiet mode."""
        if self.mode != "quiet":
            say(self.console, message)

    def _fields(self) -> dict[str, str]:
        s = self.stats
        return {"phase": s.phase, "loss": f"{s.last_loss:.4f}" if s.last_loss is not None
                else "-", "saved": str(s.backward_saved), "speedup": f"{s.speedup_estimate:.2f}"}
