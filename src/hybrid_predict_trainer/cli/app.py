"""``hpt``: the command-line front door.

Why typer + rich: typer turns typed functions into commands with validated options (an
unknown flag is an error that lists the valid ones, never silently ignored), and rich gives
tables and progress bars that degrade to plain text when output is not a terminal.
"""
from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="hybrid-predict-trainer: predicted training steps, verified and "
                       "really applied; and a health monitor that refuses silent failure.")
console = Console()


class JumpCheck(str, Enum):
    """The two jump checks of ``HybridConfig.jump_check`` (an Enum so typer lists them)."""

    paired = "paired"
    guard = "guard"


@app.callback()
def _root() -> None:
    """Commands: demo, train, report, sweep, bench."""


@app.command()
def demo(
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the comparison "
                                             "as JSON to this file."),
    epochs: int = typer.Option(12, min=1, max=200, help="Epochs over the 4,000 training digits."),
    seed: int = typer.Option(0, help="Seed for the initial weights, split and batch order."),
    threads: int = typer.Option(1, min=1, max=64, help="torch threads (fixed for fair timing)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the table."),
    jump_check: JumpCheck = typer.Option(JumpCheck.paired, "--jump-check",
                                         help="How the hybrid checks its jumps: 'paired' (the "
                                         "default) or 'guard' (compare the two)."),
) -> None:
    """Train an MLP on real MNIST digits with plain AdamW and with the hybrid trainer.

    Same process, lock-step, same initial weights and batches; a comparison table follows."""
    from ..data.mnist import DataUnavailable
    from ..demo import DemoSettings, run_demo

    def say(msg: str) -> None:
        if not quiet:
            console.print(f"[dim]{msg}[/dim]")
    try:
        result = run_demo(DemoSettings(epochs=epochs, seed=seed, threads=threads,
                                       jump_check=jump_check.value), progress=say)
    except DataUnavailable as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print(demo_table(result))
    h = result["hybrid"]
    if h.get("auto_off"):
        console.print(f"[yellow]{h['auto_off']}[/yellow]")
    if (h.get("jumps") or {}).get("paused"):
        console.print(f"[yellow]{h['jumps']['paused']}[/yellow]")
    if h.get("never_predicted_reason"):
        console.print(f"[yellow]never predicted: {h['never_predicted_reason']}[/yellow]")
    if h.get("health") and not quiet:
        console.print(h["health"])
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {json_path}")


def demo_table(result: dict) -> Table:
    b, h = result["baseline"], result["hybrid"]
    t = Table(title=f"{result['workload']}: plain AdamW vs hybrid (same init, same batches, "
                    "lock-step)")
    t.add_column("metric")
    t.add_column("AdamW", justify="right")
    t.add_column("hybrid", justify="right")

    def secs(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.2f}"
    t.add_row(f"time to val loss {result['target_val_loss']:.4f} (s)",
              secs(b["time_to_target_s"]), secs(h["time_to_target_s"]))
    sp = result["speedup_to_target"]
    t.add_row("speed-up to that loss", "1.00x", "-" if sp is None else f"{sp:.2f}x")
    t.add_row("wall time, all steps (s)", f"{b['wall_s']:.2f}", f"{h['wall_s']:.2f}")
    t.add_row("backward passes", str(b["backward_passes"]), str(h["backward_passes"]))
    jumps = h.get("jumps") or {}
    t.add_row("jumps kept / undone", "-",
              f"{jumps.get('accepted', 0)} / {jumps.get('rejected', 0)}" if jumps else "off")
    t.add_row("predicted steps (applied)", "0", str(h["predicted_steps"]))
    t.add_row("rollbacks", "0", str(h["rollbacks"]))
    t.add_row("validation loss", f"{b['val_loss']:.4f}", f"{h['val_loss']:.4f}")
    t.add_row("validation accuracy", f"{b['val_accuracy']:.4f}", f"{h['val_accuracy']:.4f}")
    t.add_row("quality ratio (val loss)", "1.000", f"{result['quality_ratio']:.3f}")
    return t


def _register() -> None:
    """Commands live in their own modules; each imports its heavy dependencies lazily."""
    from .bench_cmd import bench
    from .report_cmd import report
    from .strict import StrictCommand
    from .sweep_cmd import sweep
    from .train_cmd import train

    app.command(cls=StrictCommand)(train)
    app.command(cls=StrictCommand)(report)
    app.command(cls=StrictCommand)(sweep)
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                  "help_option_names": []})(bench)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
