"""``hpt train CONFIG.toml`` and ``hpt train --resume RUN_DIR``.

Ctrl-C once (or SIGTERM): the current step finishes, a checkpoint is written and the command
exits with code 130; ``hpt train --resume RUN_DIR`` continues at the next batch. Ctrl-C
twice: abort without saving. Under torchrun the stop is voted: one rank's signal stops all.
Exit codes: 0 finished (or target reached), 2 bad input, 3 stopped by the health monitor
(``[hybrid] monitor_policy = "stop"``), 130 interrupted.
"""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..distributed import replica_max_abs_diff, shutdown
from ..errors import ConfigError, HPTError
from ..metrics import JsonlWriter
from ..integrations.scalars import RunningStats
from ..report.text import run_text_report
from .batches import batches_per_epoch
from .output import error, say
from .progress import ProgressView
from .runfiles import Position, RunFiles, write_json
from .runner import Budget, LoopOptions, Outcome, Runner
from .schema import LoadedConfig, load_config, parse_config
from .session import Session, open_session

EXIT_CODES = {"finished": 0, "target": 0, "monitor-stop": 3, "interrupted": 130}


def train(
    config: Optional[Path] = typer.Argument(None, help="The run's TOML file (see docs/cli.md).",
                                            show_default=False),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this "
                                          "folder from its latest checkpoint."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Override \\[run] epochs "
                                         "(e.g. to extend a finished run with --resume)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1,
                                            help="Override \\[run] max_steps."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Override \\[run] run_dir "
                                           "(relative to the current directory)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run in the "
                                   "run folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output; print only "
                               "the result."),
) -> None:
    """Train the task a TOML config names, with checkpoints, Ctrl-C resume and a run folder."""
    console = Console()
    clean = False
    try:
        code = run_train(console, config, resume, epochs, max_steps, run_dir, overwrite, quiet)
        clean = True
    except HPTError as exc:
        error(console, exc)
        raise typer.Exit(2) from None
    finally:
        shutdown(clean)
    raise typer.Exit(code)


def run_train(console: Console, config: Path | None, resume: Path | None, epochs: int | None,
              max_steps: int | None, run_dir: Path | None, overwrite: bool,
              quiet: bool) -> int:
    """The body of ``hpt train``; returns the exit code."""
    if (config is None) == (resume is None):
        raise ConfigError("train: give a CONFIG.toml to start a run, or --resume RUN_DIR to "
                          "continue one (not both)")
    if resume is not None and (run_dir is not None or overwrite):
        raise ConfigError("--resume: --run-dir and --overwrite only apply to a new run")
    if resume is not None:
        files = RunFiles(resume)
        state = files.read_state()
        base = Path(state.get("config_dir") or resume)
        loaded = parse_config(files.config.read_text(encoding="utf-8"), files.config,
                              base if base.is_dir() else resume)
    else:
        loaded = load_config(config)  # type: ignore[arg-type]
        files = RunFiles(run_dir.resolve() if run_dir is not None else loaded.run_dir())
    if resume is not None and isinstance(state.get("budget"), dict):
        # the budget the run was started (or last resumed) with, flags included
        loaded = _set_budget(loaded, state["budget"].get("epochs"),
                             state["budget"].get("max_steps"))
    loaded = _override_budget(loaded, epochs, max_steps)
    if resume is None and files.is_run() and not overwrite:     # before any work, on every rank
        raise ConfigError(f"run_dir: '{files.root}' already holds a run; continue it with "
                          f"hpt train --resume {files.root}, or pass --overwrite / "
                          "--run-dir NEW")
    session = open_session(loaded, run_dir=files.root)
    if resume is None and session.dist.is_main:
        files.clear()
        files.start(loaded.text, loaded.base_dir)
    if session.dist.is_main:   # a later --resume keeps this budget unless told otherwise
        files.update_state(budget={"epochs": loaded.file.run.epochs,
                                   "max_steps": loaded.file.run.max_steps})
    position = Position()
    if resume is not None:
        position = files.load_checkpoint(session.trainer, session.task.scheduler)
    return _train(console, loaded, session, files, position, resumed=resume is not None,
                  quiet=quiet)


def _override_budget(loaded: LoadedConfig, epochs: int | None, max_steps: int | None
                     ) -> LoadedConfig:
    if epochs is None and max_steps is None:
        return loaded
    run = loaded.file.run
    return _set_budget(loaded, run.epochs if epochs is None else epochs,
                       run.max_steps if max_steps is None else max_steps)


def _set_budget(loaded: LoadedConfig, epochs: int | None, max_steps: int | None
                ) -> LoadedConfig:
    run = loaded.file.run.model_copy(update={"epochs": epochs, "max_steps": max_steps})
    file = loaded.file.model_copy(update={"run": run})
    return LoadedConfig(file, loaded.hybrid, loaded.path, loaded.base_dir, loaded.text)


def _train(console: Console, loaded: LoadedConfig, session: Session, files: RunFiles,
           position: Position, *, resumed: bool, quiet: bool) -> int:
    run = loaded.file.run
    trainer, dist = session.trainer, session.dist
    main = dist.is_main
    stats = (RunningStats.from_summary(trainer.summary()) if resumed else RunningStats())
    trainer.add_hook(stats)
    writer = JsonlWriter(files.metrics) if main else None
    tb = None
    if writer is not None:
        trainer.add_hook(writer)
        if resumed:
            writer.write({"type": "resume", "step": position.step, "position":
                          position.to_dict()})
        if run.tensorboard:
            from ..integrations.tensorboard import TensorBoardHook
            tb = TensorBoardHook(files.tensorboard, stats=stats)
            trainer.add_hook(tb)
    mode = "quiet" if quiet or not main else ("rich" if console.is_terminal else "plain")
    per_epoch = batches_per_epoch(session.task.train, dist.world_size, run.shard)
    totals = [t for t in (run.max_steps, per_epoch * run.epochs if per_epoch and run.epochs
                          else None) if t]
    view = ProgressView(console, stats, min(totals) if totals else None, mode, run.log_every)
    trainer.add_hook(view)
    runner = Runner(session.task, trainer, Budget(run.epochs, run.max_steps),
                    LoopOptions(run.seed, run.shard, run.eval_every, run.checkpoint_every,
                                run.keep_checkpoints),
                    dist=dist, collective=session.collective,
                    model_for_loss=session.model_for_loss, files=files, writer=writer)
    view.note(f"{'resuming' if resumed else 'run'} {files.root} "
              f"(epoch {position.epoch}, batch {position.batch}, step {position.step})")
    with _sigint() as interrupted, view:
        runner.interrupted = interrupted
        outcome = runner.run(position)
    if outcome.status == "interrupted":
        view.note("interrupted: saving a checkpoint")
    if outcome.status != "interrupted":
        runner.final_eval(outcome.position)
    if runner.last_checkpoint_step != outcome.position.step:
        runner.checkpoint(outcome.position)
    summary = _finish(files, trainer, outcome, runner, stats, writer, tb, main)
    if main:
        _print_result(console, summary, files, outcome, quiet)
    return EXIT_CODES[outcome.status]


def _finish(files: RunFiles, trainer: Any, outcome: Outcome, runner: Runner,
            stats: RunningStats, writer: JsonlWriter | None, tb: Any, main: bool
            ) -> dict[str, Any]:
    summary = trainer.summary()
    health_text = run_text_report(trainer)
    summary.update({"status": outcome.status, "position": outcome.position.to_dict(),
                    "train_time_s": outcome.position.train_time_s,
                    "final_val_loss": runner.evals[-1][2] if runner.evals else None,
                    "speedup_estimate": stats.speedup_estimate,
                    "backward_saved": stats.backward_saved,
                    "config": trainer.config.model_dump()})
    if collective_size(trainer) > 1:       # every rank takes part: one broadcast, one reduce
        summary["replica_max_abs_diff"] = replica_max_abs_diff(_replica_state(trainer))
        summary["world_size"] = collective_size(trainer)
    if main:
        if writer is not None:
            writer.write({"type": "summary", **summary})
            writer.close()
        write_json(files.summary, summary)
        files.health.write_text(health_text + "\n", encoding="utf-8")
        files.update_state(status=outcome.status, position=outcome.position.to_dict())
        if tb is not None:
            tb.add_summary(summary, health_text)
            tb.close()
    trainer.close()
    return summary


def _print_result(console: Console, s: dict[str, Any], files: RunFiles, outcome: Outcome,
                  quiet: bool) -> None:
    t = Table(title=f"hpt train: {outcome.status}", show_header=False)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("steps", str(s["steps"]))
    t.add_row("backward passes", str(s["backward_passes"]))
    t.add_row("predicted steps", f"{s['predicted_steps']} ({100 * s['predicted_fraction']:.0f}%)")
    t.add_row("segments / rollbacks", f"{s['segments']} / {s['rollbacks']}")
    t.add_row("training time (s)", f"{s['train_time_s']:.2f}")
    t.add_row("speed-up estimate (wall)", f"{s['speedup_estimate']:.2f}x")
    if s.get("final_val_loss") is not None:
        t.add_row("validation loss", f"{s['final_val_loss']:.4f}")
    console.print(t)
    if not quiet and s.get("health"):   # health.txt holds the reasons too
        say(console, files.health.read_text(encoding="utf-8").rstrip())
    elif s.get("never_predicted_reason"):
        say(console, f"never predicted: {s['never_predicted_reason']}")
    if outcome.status == "interrupted":
        say(console, f"checkpoint saved; continue with: hpt train --resume {files.root}")
    elif outcome.status == "monitor-stop":
        say(console, "stopped by the health monitor (monitor_policy = 'stop'); see "
            f"{files.health}")
    else:
        say(console, f"run folder: {files.root}  (hpt report {files.root})")


def collective_size(trainer: Any) -> int:
    return int(getattr(trainer.collective, "world_size", 1))


def _replica_state(trainer: Any) -> list[Any]:
    """Parameters and optimizer state tensors: what must be identical on every rank."""
    import torch

    tensors = list(trainer.flat.params)
    for st in trainer.optimizer.state.values():
        tensors += [v for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    return tensors


@contextmanager
def _sigint() -> Iterator[Any]:
    """First Ctrl-C (SIGINT) or SIGTERM: ask the loop to stop after this step and save.
    A second one aborts (KeyboardInterrupt). SIGTERM is what torchrun's agent and cluster
    schedulers send before killing a job; treating it like Ctrl-C leaves a checkpoint."""
    hits = {"n": 0}

    def handler(signum: int, frame: Any) -> None:
        hits["n"] += 1
        if hits["n"] > 1:
            raise KeyboardInterrupt
        print(f"\n{signal.Signals(signum).name}: stopping after this step and saving a "
              "checkpoint (press Ctrl-C again to abort without saving)", file=sys.stderr,
              flush=True)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:          # not the main thread: no handler, plain KeyboardInterrupt
        yield lambda: False
        return
    try:
        yield lambda: hits["n"] > 0
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
