"""``hpt sweep CONFIG.toml --trials N``: Optuna search over the hybrid settings.

The study lives in ``RUN_DIR/sweep/sweep.db`` (SQLite): running the command again adds N
more trials to the same study. Each trial's metrics go to ``RUN_DIR/sweep/trial-NNNN/``
(``hpt report`` renders any of them). The best settings are printed as a ``[hybrid]`` TOML
snippet and written to ``RUN_DIR/sweep/best.toml``.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from ..errors import ConfigError, HPTError, TrainerStateError
from ..metrics import JsonlWriter
from .output import error, say
from .runfiles import Position, write_json
from .runner import Budget, LoopOptions, Runner
from .schema import LoadedConfig, SweepSection, load_config
from .session import open_session
from .sweep import changed_settings, search_space, storage_url, suggest, toml_snippet


def sweep(
    config: Path = typer.Argument(..., help="The run's TOML file, with a \\[sweep] table."),
    trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1,
                                         help="Trials to run now (default: \\[sweep] trials)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Override \\[run] run_dir; "
                                           "the study goes to RUN_DIR/sweep."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the best settings."),
) -> None:
    """Optuna search over the hybrid settings; prints the best settings as a TOML snippet.

    Searches segments on/off, jumps (jump_every, jump_check, jump_alpha,
    jump_alpha_step) and divergence_sigma.

    The segment settings (max_horizon, predictor, ...) only in trials with segments on.

    The study is stored in RUN_DIR/sweep/sweep.db; rerun the command to add trials.
    """
    console = Console()
    try:
        run_sweep(console, config, trials, run_dir, quiet)
    except HPTError as exc:
        error(console, exc)
        raise typer.Exit(2) from None


def run_sweep(console: Console, config: Path, trials: int | None, run_dir: Path | None,
              quiet: bool) -> dict[str, Any]:
    """The body of ``hpt sweep``; returns the best trial's value and settings."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("sweep: optuna is not installed; pip install "
                          "'hybrid-predict-trainer[sweep]'") from None
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("sweep: run hpt sweep in one process (not under torchrun); train the "
                          "best settings with torchrun afterwards")
    loaded = load_config(config)
    sw = loaded.file.sweep
    if sw is None:
        raise ConfigError(f"{loaded.path.name}: hpt sweep needs a [sweep] table, e.g. "
                          "[sweep] objective = \"time_to_target\", target_val_loss = 0.4")
    space = search_space(sw)
    folder = (run_dir.resolve() if run_dir is not None else loaded.run_dir()) / "sweep"
    folder.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    sampler = _sampler(optuna, sw.sampler_seed)
    study = optuna.create_study(study_name=sw.study, storage=storage_url(folder),
                                sampler=sampler, direction="minimize", load_if_exists=True)
    _check_same_objective(study, sw)

    def objective(trial: Any) -> float:
        value, reached, row = _trial(trial, loaded, sw, space, folder)
        if not quiet:
            say(console, f"trial {trial.number}: " + "  ".join(c for c in row[1:] if c))
        return value

    study.optimize(objective, n_trials=trials or sw.trials, catch=(TrainerStateError,))
    return _best(console, study, sw, space, loaded, folder)


def _trial(trial: Any, loaded: LoadedConfig, sw: SweepSection, space: dict[str, list[Any]],
           folder: Path) -> tuple[float, bool, list[str]]:
    import optuna

    cfg = suggest(trial, space, loaded.hybrid)
    trial.set_user_attr("hybrid", changed_settings(cfg))
    tdir = folder / f"trial-{trial.number:04d}"
    tdir.mkdir(parents=True, exist_ok=True)
    session = open_session(loaded, hybrid=cfg, run_dir=tdir)
    if session.task.validate is None:
        raise ConfigError("sweep: the task has no validate(model) function; return one from "
                          "the entry point (the objective needs a validation loss)")
    writer = JsonlWriter(tdir / "metrics.jsonl")
    session.trainer.add_hook(writer)
    run = loaded.file.run
    target = sw.target_val_loss if sw.objective == "time_to_target" else None

    def on_eval(value: float, pos: Position) -> bool:
        trial.report(value, pos.step)
        return target is not None and value <= target

    runner = Runner(session.task, session.trainer, Budget(run.epochs, run.max_steps),
                    LoopOptions(run.seed, run.shard, run.eval_every, 0, 1),
                    dist=session.dist, collective=session.collective,
                    model_for_loss=session.model_for_loss, writer=writer, on_eval=on_eval)
    try:
        outcome = runner.run(Position())
        final = runner.final_eval(outcome.position) if outcome.status != "target" \
            else outcome.val_loss
    finally:
        summary = session.trainer.summary()
        session.trainer.close()
    t = outcome.position.train_time_s
    reached = outcome.status == "target"
    summary.update({"status": outcome.status, "train_time_s": t, "final_val_loss": final,
                    "trial": trial.number, "config": session.trainer.config.model_dump()})
    writer.write({"type": "summary", **summary})
    writer.close()
    write_json(tdir / "summary.json", summary)
    if final is None or not math.isfinite(final):
        raise optuna.TrialPruned(f"validation loss is {final}")
    trial.set_user_attr("train_time_s", t)
    trial.set_user_attr("final_val_loss", final)
    trial.set_user_attr("predicted_fraction", summary["predicted_fraction"])
    trial.set_user_attr("reached", reached)
    if sw.objective == "time_to_target":
        assert sw.target_val_loss is not None
        violation = 0.0 if reached else final - sw.target_val_loss
        trial.set_user_attr("constraint", violation)
        if hasattr(trial, "set_constraint"):      # optuna >= 5
            trial.set_constraint("target_val_loss", violation)
        value = t if reached else 2.0 * t
    else:
        value = final
    row = [str(trial.number), f"value={value:.4g}", f"val_loss={final:.4f}",
           f"time={t:.2f}s", f"reached={'yes' if reached else 'no'}" if target else "",
           f"predicted={100 * summary['predicted_fraction']:.0f}%",
           " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in trial.params.items())]
    return value, reached, row


def _sampler(optuna: Any, seed: int) -> Any:
    """TPE that treats trials missing the target as infeasible (constraint > 0)."""
    if hasattr(optuna.trial.Trial, "set_constraint"):      # optuna >= 5: set per trial
        return optuna.samplers.TPESampler(seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, constraints_func=lambda t: [t.user_attrs.get("constraint", 0.0)])


def _check_same_objective(study: Any, sw: SweepSection) -> None:
    key = f"{sw.objective}:{sw.target_val_loss}"
    seen = study.user_attrs.get("objective")
    if seen is None:
        study.set_user_attr("objective", key)
    elif seen != key:
        raise ConfigError(f"[sweep]: the study '{sw.study}' in sweep.db was made for objective "
                          f"'{seen}', not '{key}'; use another study name or --run-dir")


def _best(console: Console, study: Any, sw: SweepSection, space: dict[str, list[Any]],
          loaded: LoadedConfig, folder: Path) -> dict[str, Any]:
    done = [t for t in study.trials if t.value is not None and "hybrid" in t.user_attrs]
    feasible = [t for t in done if t.user_attrs.get("constraint", 0.0) <= 0.0]
    if not done:
        raise ConfigError("sweep: no trial completed; see the errors above")
    if feasible or sw.objective != "time_to_target":
        best = min(feasible or done, key=lambda t: t.value)
        what = (f"{best.user_attrs['train_time_s']:.2f} s to validation loss "
                f"{sw.target_val_loss}" if sw.objective == "time_to_target"
                else f"validation loss {best.value:.4f}")
    else:
        # No trial reached the target: the fastest miss is not the best one. Recommend the
        # trial that came closest to the target, and say that it missed.
        best = min(done, key=lambda t: t.user_attrs["final_val_loss"])
        what = (f"validation loss {best.user_attrs['final_val_loss']:.4f} in "
                f"{best.user_attrs['train_time_s']:.2f} s, closest to the target "
                f"{sw.target_val_loss}, which no trial reached: lower it or raise the budget")
    comment = (f"best of {len(done)} trials (trial {best.number}): {what}; "
               f"study '{sw.study}' in {folder.name}/sweep.db")
    snippet = toml_snippet(best.user_attrs["hybrid"], comment)
    (folder / "best.toml").write_text(snippet, encoding="utf-8")
    say(console, snippet.rstrip())
    return {"value": best.value, "trial": best.number, "hybrid": best.user_attrs["hybrid"],
            "feasible": bool(feasible), "trials": len(done)}
