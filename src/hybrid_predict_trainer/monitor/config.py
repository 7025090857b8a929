"""``MonitorConfig``: every option of :func:`watch`, validated, with the reason for its default.

Why strict: a misspelt option that is silently ignored turns a check off without anyone
noticing (failure case H). Unknown keys are a ``ConfigError`` that lists the valid names.
Defaults keep the expensive checks sampled so the monitor costs under 3% of a small step.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from .finding import CODES

Policy = Literal["warn", "raise", "stop"]


class MonitorConfig(BaseModel):
    """Options of the health monitor; pass them as keyword arguments to :func:`watch`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, frozen=True)

    policy: Policy = Field("warn", description="What a warning-or-worse finding does: 'warn' "
                           "emits a HealthWarning, 'raise' raises HealthError, 'stop' sets "
                           "monitor.should_stop.")
    disable: list[str] = Field(default_factory=list, description="Finding codes to switch off.")

    # --- gradients -----------------------------------------------------------------------
    warmup_steps: int = Field(20, ge=1, description="Steps whose gradient norms form the "
                              "per-parameter baseline (their median), and the grace period "
                              "before collapse checks may fire.")
    grad_every: int = Field(20, ge=1, description="After warm-up, gradient norms are read "
                            "every this many optimizer steps (one foreach norm and one sync, "
                            "0.03-0.1 ms on a small model).")
    vanish_factor: float = Field(0.01, gt=0.0, lt=1.0, description="A parameter's gradient "
                                 "norm below this multiple of its warm-up median has vanished.")
    explode_factor: float = Field(10.0, gt=1.0, description="A parameter's gradient norm above "
                                  "this multiple of its warm-up median has exploded.")
    grad_patience: int = Field(2, ge=1, description="Consecutive gradient reads below the "
                               "vanishing threshold before reporting; one dip is not a trend.")
    explode_patience: int = Field(1, ge=1, description="Consecutive gradient reads above the "
                                  "exploding threshold before reporting. One is enough: an "
                                  "explosion must also show in the whole gradient and the loss, "
                                  "and the next read may already be NaN.")
    accumulation_steps: int = Field(1, ge=1, description="Gradients are meant to be reset at "
                                    "least once every this many optimizer steps (monitor "
                                    "steps when no optimizer is watched). Raise it only for "
                                    "deliberate accumulation across those steps.")

    # --- parameters and optimizer --------------------------------------------------------
    update_every: int = Field(25, ge=1, description="Steps between comparisons of parameters "
                              "against their first snapshot (up to 4096 sampled values each).")
    update_patience: int = Field(50, ge=1, description="Optimizer steps a trainable parameter "
                                 "may stay unchanged before it is reported.")

    # --- losses --------------------------------------------------------------------------
    allow_broadcast: bool = Field(False, description="Accept loss inputs of different shapes "
                                  "(documented opt-out for programs that broadcast on purpose).")
    allow_normalized: bool = Field(False, description="Accept MSE-type losses on unit-norm "
                                   "vectors (e.g. BYOL-style objectives that compare directions).")
    loss_check_every: int = Field(50, ge=1, description="Steps between checks of the row norms "
                                  "of MSE-type loss inputs and of the shapes of the outputs/"
                                  "targets passed to step() (the first two steps are always "
                                  "checked; loss calls are shape-checked on every call).")
    components_every: int = Field(10, ge=1, description="Steps between reads of the loss "
                                  "components passed to step().")
    dominance_share: float = Field(0.8, gt=0.5, lt=1.0, description="Share of the total loss "
                                   "above which one term dominates.")
    dominance_window: int = Field(20, ge=4, description="Component reads that must show the "
                                  "dominance while the other terms stop improving.")

    # --- outputs and representations -----------------------------------------------------
    outputs_every: int = Field(50, ge=1, description="Steps between reads of the spread of the "
                               "outputs passed to step() (~0.03-0.13 ms per read on a small "
                               "classifier).")
    collapse_ratio: float = Field(0.1, gt=0.0, lt=1.0, description="Outputs collapsed when "
                                  "their spread between samples falls below this fraction of "
                                  "its peak.")
    collapse_patience: int = Field(2, ge=1, description="Consecutive output reads showing the "
                                   "collapse before reporting.")
    watch_layers: list[Any] | None = Field(None, description="Modules (or their names in "
                                           "model.named_modules()) whose outputs are checked "
                                           "for rank collapse. Off by default: a classifier's "
                                           "penultimate layer legitimately narrows to about "
                                           "one direction per class late in training.")
    rank_every: int = Field(100, ge=1, description="Steps between effective-rank reads of the "
                                                   "watched layers (one SVD each).")
    rank_rows: int = Field(256, ge=2, description="Rows (samples x positions) used per SVD.")
    rank_fraction: float = Field(0.1, gt=0.0, lt=1.0, description="Effective rank below this "
                                 "fraction of min(width, rows) is a collapse.")
    rank_patience: int = Field(2, ge=1, description="Consecutive low-rank reads before "
                                                    "reporting.")

    # --- user statistics and gates -------------------------------------------------------
    track_every: int = Field(1, ge=1, description="Steps between reads of tracked statistics "
                                                  "and gates that have a score function.")
    stale_window: int = Field(50, ge=4, description="Reads of a tracked statistic that must "
                              "all be equal, while the loss moves, to call it stale.")
    stale_loss_change: float = Field(0.01, gt=0.0, description="Relative range of the loss over "
                                     "that window that counts as 'the loss moved'.")
    unreachable_after: int = Field(50, ge=1, description="Gate evaluations after which a gate "
                                   "that never came within reach of its threshold is reported.")
    gate_reach: float = Field(0.05, ge=0.0, lt=1.0, description="'Within reach' means within "
                              "this fraction of the threshold.")

    # --- autograd graph ------------------------------------------------------------------
    graph_every: int = Field(100, ge=1, description="Steps between walks of the loss graph (the "
                             "first two steps are always walked, so a carried graph is seen "
                             "before the second backward fails).")
    graph_max_nodes: int = Field(2000, ge=10, description="Cap on graph nodes walked and hooked "
                                                          "per walk.")

    @field_validator("disable")
    @classmethod
    def _known_codes(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in CODES]
        if unknown:
            raise ValueError(f"unknown finding code(s) {unknown}; valid codes are: "
                             f"{', '.join(CODES)}")
        return value

    @classmethod
    def from_options(cls, **options: Any) -> "MonitorConfig":
        """Validate ``watch(**options)``; any problem is one ``ConfigError`` line."""
        valid = sorted(cls.model_fields)
        unknown = [k for k in options if k not in cls.model_fields]
        if unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), valid, n=1)
                parts.append(f"'{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise ConfigError(f"watch: unknown option {', '.join(parts)}; valid options are: "
                              f"{', '.join(valid)}")
        try:
            return cls(**options)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    """pydantic's multi-line report as one line: 'field: message (got X)'."""
    msgs = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "options"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        got = f" (got {err['input']!r})" if "input" in err and err.get("type") != "value_error" \
            else ""
        msgs.append(f"{loc}: {msg}{got}")
    return "watch: " + "; ".join(msgs)
