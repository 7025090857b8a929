"""The Optuna search behind ``hpt sweep``: search space, objective and the TOML answer.

Objectives (``[sweep] objective``):

- ``time_to_target`` (default): training seconds (validation excluded) until the validation
  loss first reaches ``target_val_loss``; the trial stops there. A trial that never reaches
  it within the ``[run]`` budget is *infeasible* (a constraint for the TPE sampler) and scores
  twice its training time, so quality is a hard requirement and speed is what is optimised.
- ``val_loss``: the validation loss at the end of the ``[run]`` budget.

Validation comes from the task's ``validate(model)``; it runs every ``[run] eval_every``
steps (or at each epoch end), the granularity at which the target can be detected.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..config import JUMP_SETTINGS, SEGMENT_SETTINGS, HybridConfig
from ..errors import ConfigError
from .schema import SWEEP_KEYS, SweepSection

_FLOAT_KEYS = ("confidence_threshold", "divergence_sigma", "jump_alpha")
DEFAULT_SPACE: dict[str, list[Any]] = {
    "segments": [False, True],
    "max_horizon": [4, 8, 16, 32],
    "confidence_threshold": [0.3, 0.8],
    "correction_interval": [0, 2, 4, 8],
    "predictor": ["continuation", "extrapolation", "rssm", "averaging"],
    "check_every": [1, 2, 4],
    "jump_every": [0, 5, 10],
    "jump_check": ["paired", "guard"],
    "jump_alpha": [0.3, 0.8],
    "jump_alpha_step": [0.0, 0.05],
    "jump_alpha_calm": [0.0, 0.65],
    "divergence_sigma": [2.0, 6.0],
}
#: Searched only in trials with predicted segments on: without them these settings do nothing,
#: and searching them would spend trials on differences that cannot exist.
SEGMENT_KEYS = tuple(k for k in SWEEP_KEYS if k in SEGMENT_SETTINGS)
#: Searched only in trials with jumps on (``jump_every`` > 0), for the same reason.
JUMP_KEYS = tuple(k for k in SWEEP_KEYS if k in JUMP_SETTINGS)


def search_space(sweep: SweepSection) -> dict[str, list[Any]]:
    """The defaults, narrowed by ``[sweep.space]``. Float keys take [low, high]; the others
    a list of choices (one choice fixes the value)."""
    space = {**DEFAULT_SPACE, **sweep.space}
    for key in _FLOAT_KEYS:
        v = space[key]
        if len(v) != 2 or not all(isinstance(x, (int, float)) for x in v) or v[0] > v[1]:
            raise ConfigError(f"[sweep] space.{key}: give [low, high] with low <= high, got {v}")
    return {k: space[k] for k in SWEEP_KEYS}


def suggest(trial: Any, space: dict[str, list[Any]], base: HybridConfig) -> HybridConfig:
    """One point of the space on top of the ``[hybrid]`` settings (validated).

    Define-by-run: the segment settings are drawn only when the trial turns segments on, the
    jump settings only when it turns jumps on, so no trial differs from another only in
    settings that have no effect."""
    values: dict[str, Any] = {}

    def draw(key: str) -> None:
        v = space[key]
        if key in _FLOAT_KEYS:
            values[key] = (float(v[0]) if v[0] == v[1]
                           else trial.suggest_float(key, float(v[0]), float(v[1])))
        else:
            values[key] = v[0] if len(v) == 1 else trial.suggest_categorical(key, list(v))

    for key in ("segments", "jump_every", "divergence_sigma"):
        draw(key)
    if values["segments"]:
        for key in SEGMENT_KEYS:
            draw(key)
    if values["jump_every"]:
        for key in JUMP_KEYS:
            if key != "jump_alpha_calm":
                draw(key)
        # elsewhere every choice of the calm rule trains alike
        if _calm_can_act(base.model_copy(update=values), max(space["jump_alpha_calm"])):
            draw("jump_alpha_calm")
    cfg = base.model_dump()
    cfg.update(values)
    if values["segments"]:
        cfg["horizons"] = _horizons(base, int(values["max_horizon"]))
    return HybridConfig.from_dict(cfg)


def _horizons(base: HybridConfig, max_h: int) -> list[int]:
    """The bandit's arms for this max_horizon: the configured ones that fit, else powers of 2."""
    fitting = [h for h in base.horizons if h <= max_h]
    if "horizons" in base.model_fields_set and fitting:
        return fitting
    arms = [h for h in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if h <= max_h]
    return arms if arms and arms[-1] == max_h else arms + [max_h]


_DEFAULT_CALM = HybridConfig.model_fields["jump_alpha_calm"].default


def _calm_can_act(cfg: HybridConfig, calm: float) -> bool:
    """Whether ``jump_alpha_calm=calm`` would set the pull in ``cfg``: only paired checks
    measure the calm, and :meth:`HybridConfig.calm_pull` says whether another rule sets it."""
    return (cfg.jump_check == "paired"
            and cfg.model_copy(update={"jump_alpha_calm": calm}).calm_pull() > 0.0)


def changed_settings(cfg: HybridConfig) -> dict[str, Any]:
    """The settings of ``cfg`` that the search decides and that take effect, for the TOML
    snippet: the segment settings (with horizons) only when segments are on, the jump
    settings only when jumps are on (the calm rule only where it can act)."""
    keys = ["segments", "jump_every", "divergence_sigma"]
    if cfg.segments:
        keys += [*SEGMENT_KEYS, "horizons"]
    if cfg.jump_every:
        keys += [k for k in JUMP_KEYS if k != "jump_alpha_calm"]
        # the rule on, or off where the default calm pull would have acted
        if _calm_can_act(cfg, cfg.jump_alpha_calm or _DEFAULT_CALM):
            keys.append("jump_alpha_calm")
    return {k: (list(v) if isinstance(v := getattr(cfg, k), tuple) else v) for k in keys}


def toml_snippet(settings: dict[str, Any], comment: str) -> str:
    """``[hybrid]`` lines for the best settings (plain values only)."""
    lines = [f"# {comment}", "[hybrid]"]
    for k, v in settings.items():
        lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 6)) if math.isfinite(v) else "nan"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ConfigError(f"sweep: cannot write {type(v).__name__} as TOML")


def storage_url(folder: Path) -> str:
    """SQLite storage inside the sweep folder (resumable: rerun the command to add trials)."""
    return f"sqlite:///{(folder / 'sweep.db').resolve().as_posix()}"
