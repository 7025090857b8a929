"""The TOML file ``hpt train`` and ``hpt sweep`` read, validated with pydantic.

Why strict: a misspelt key that is silently ignored trains the wrong experiment. Every table
forbids unknown keys, and an error is one line naming the table, the key and the valid ones.

    [run]                       # how to run (this table is required)
    entry = "task.py:build"     # module:function returning the task (see cli/task.py)
    epochs = 3                  # and/or max_steps; training stops at whichever comes first
    [args]                      # keyword arguments for the entry function
    [hybrid]                    # HybridConfig fields (docs: hybrid_predict_trainer.HybridConfig)
    [sweep]                     # only for hpt sweep

Relative paths (``entry`` given as a file, ``run_dir``) are resolved against the folder of
the config file, so a config means the same thing from any working directory.
"""
from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..config import HybridConfig
from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

SWEEP_KEYS = ("segments", "max_horizon", "confidence_threshold", "correction_interval",
              "predictor", "check_every", "jump_every", "jump_check", "jump_alpha",
              "jump_alpha_step", "jump_alpha_calm", "divergence_sigma")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSection(_Strict):
    """``[run]``: the entry point, the budget and where outputs go."""

    entry: str = Field(description="'module:function' (or 'file.py:function', relative to the "
                       "config file) returning the task.")
    epochs: int | None = Field(None, ge=1, description="Passes over the training data.")
    max_steps: int | None = Field(None, ge=1, description="Training steps (batches) in all.")
    run_dir: str | None = Field(None, description="Output folder (default runs/<config name>, "
                                "next to the config file).")
    seed: int = Field(0, description="Seeds torch, numpy and random before the entry runs, "
                      "and the batch order of every epoch.")
    checkpoint_every: int = Field(0, ge=0, description="Steps between checkpoints (0: only at "
                                  "the end and on Ctrl-C).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    eval_every: int = Field(0, ge=0, description="Steps between validations (0: at the end of "
                            "every epoch). Needs the task's validate function.")
    log_every: int = Field(50, ge=1, description="Steps between plain progress lines "
                           "(when output is not a terminal).")
    threads: int | None = Field(None, ge=1, description="torch.set_num_threads for this run.")
    tensorboard: bool = Field(False, description="Also write TensorBoard events to "
                              "RUN_DIR/tensorboard (extra [tensorboard]).")
    shard: Literal["batches", "none"] = Field(
        "batches", description="Under torchrun: 'batches' gives rank r every world_size-th "
        "batch of the same order; 'none' when the loader already shards (DistributedSampler).")

    @model_validator(mode="after")
    def _budget(self) -> "RunSection":
        if self.epochs is None and self.max_steps is None:
            raise ValueError("set epochs or max_steps (or both: training stops at whichever "
                             "comes first)")
        if self.entry.count(":") < 1 or not all(self.entry.rsplit(":", 1)):
            raise ValueError(f"entry: expected 'module:function' or 'file.py:function', got "
                             f"'{self.entry}'")
        return self


class SweepSection(_Strict):
    """``[sweep]``: the Optuna search of ``hpt sweep``."""

    trials: int = Field(20, ge=1, description="Trials per call (--trials overrides).")
    objective: Literal["time_to_target", "val_loss"] = Field(
        "time_to_target", description="'time_to_target': training seconds until the validation "
        "loss reaches target_val_loss (trials that never reach it are infeasible); "
        "'val_loss': validation loss at the end of the budget.")
    target_val_loss: float | None = Field(None, gt=0, description="Required for "
                                          "time_to_target.")
    study: str = Field("hpt-sweep", min_length=1, description="Study name in sweep.db.")
    sampler_seed: int = Field(0, description="Seed of the TPE sampler.")
    space: dict[str, list[Any]] = Field(
        default_factory=dict, description="Narrow the search: key -> [low, high] for floats, "
        "or a list of choices.")

    @model_validator(mode="after")
    def _check(self) -> "SweepSection":
        if self.objective == "time_to_target" and self.target_val_loss is None:
            raise ValueError("target_val_loss: required when objective = 'time_to_target' "
                             "(or set objective = 'val_loss')")
        bad = [k for k in self.space if k not in SWEEP_KEYS]
        if bad:
            raise ValueError(f"space: unknown key '{bad[0]}'; searchable keys are: "
                             f"{', '.join(SWEEP_KEYS)}")
        for k, v in self.space.items():
            if not v:
                raise ValueError(f"space.{k}: empty list; give [low, high] or choices")
            for value in v:   # now, not when a trial happens to draw it after good ones ran
                try:
                    HybridConfig(**{k: value})
                except ConfigError as exc:
                    own = f"HybridConfig: {k}: "
                    if str(exc).startswith(own):   # the value itself, not a rule between keys
                        raise ValueError(f"space.{k}: {value!r} is not a valid {k} "
                                         f"({str(exc)[len(own):]})") from None
        return self


class ConfigFile(_Strict):
    """The whole file."""

    run: RunSection
    args: dict[str, Any] = Field(default_factory=dict)
    hybrid: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepSection | None = None


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config file, with the folder its relative paths resolve against."""

    file: ConfigFile
    hybrid: HybridConfig
    path: Path
    base_dir: Path
    text: str

    def run_dir(self) -> Path:
        """The run folder this config writes to (absolute)."""
        rd = self.file.run.run_dir or f"runs/{self.path.stem}"
        p = Path(rd).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()


def parse_config(text: str, path: Path, base_dir: Path | None = None) -> LoadedConfig:
    """Validate TOML text; ``path`` names it in errors, ``base_dir`` resolves relative paths."""
    name = path.name
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML ({exc}); fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{name}: not valid TOML (arrays or tables nested too deeply); "
                          "fix the syntax") from None
    try:
        file = ConfigFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{name}: {_one_line(exc)}") from None
    hyb = dict(file.hybrid)
    if "metrics_path" in hyb:
        raise ConfigError(f"{name}: [hybrid] metrics_path is set by hpt (metrics go to "
                          "RUN_DIR/metrics.jsonl); remove it")
    try:
        hybrid = HybridConfig.from_dict(hyb)
    except ConfigError as exc:
        detail = str(exc).removeprefix("HybridConfig: ").removeprefix("config: ")
        raise ConfigError(f"{name}: [hybrid] {detail}") from None
    return LoadedConfig(file, hybrid, path, (base_dir or path.parent).resolve(), text)


def load_config(path: str | Path) -> LoadedConfig:
    """Read and validate a config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: '{p}' does not exist or is not a file; pass a .toml file "
                          "(see docs/cli.md for the schema)")
    return parse_config(p.read_text(encoding="utf-8"), p)


def _one_line(exc: ValidationError) -> str:
    """'[table] key: problem' for each error; unknown keys list the valid ones."""
    msgs = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        table, key = (loc[0], ".".join(loc[1:])) if loc else ("", "")
        where = f"[{table}] {key}".strip() if table in ConfigFile.model_fields else ".".join(loc)
        if err.get("type") == "extra_forbidden":
            model = _model_for(table)
            valid = sorted((model or ConfigFile).model_fields)
            bad = loc[-1]
            close = difflib.get_close_matches(bad, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            scope = f"[{table}]" if model else "top level"
            msgs.append(f"{scope}: unknown key {bad!r}{hint}; valid keys are: {', '.join(valid)}")
            continue
        if err.get("type") == "missing":
            msgs.append(f"{where}: required; add it (see docs/cli.md)")
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        got = err.get("input")
        tail = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        msgs.append(f"{where}: {msg}{tail}")
    return "; ".join(msgs)


def _model_for(table: str) -> type[BaseModel] | None:
    return {"run": RunSection, "sweep": SweepSection}.get(table)
