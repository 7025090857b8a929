"""``HybridConfig``: every knob of the hybrid trainer, validated, with the reason for its default.

Why pydantic: it gives typed, range-checked fields and JSON/TOML round trips for free. We wrap
its errors so that a bad value produces one line naming the field and the fix, and an unknown
key lists the valid ones (a silently ignored flag once cost a real team a model in a
comparison).
"""
from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

PredictorName = Literal["continuation", "extrapolation", "rssm", "averaging"]


class HybridConfig(BaseModel):
    """Configuration of :class:`~hybrid_predict_trainer.HybridTrainer`.

    Defaults were chosen from the benchmark suite (``hpt bench``); see ``benchmarks/RESULTS.md``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)

    # --- phase lengths -------------------------------------------------------------------
    warmup_steps: int = Field(
        20, ge=1, description="Real steps that set the gradient-norm and loss baselines "
        "the divergence monitor compares against; 20 is enough for a stable median (of the "
        "norms of every `grad_norm_every`-th step where nothing else reads the norm).")
    full_steps: int = Field(
        10, ge=1, description="Real steps after warmup before the first prediction, so the "
        "predictor has seen a window of real updates.")
    correct_steps: int = Field(
        2, ge=1, description="Real steps after each predicted segment. Two was the best value "
        "in our prototype: one step measures the residual, the second re-anchors the optimizer.")

    # --- predict segment -----------------------------------------------------------------
    predictor: PredictorName = Field(
        "continuation", description="Which update predictor to use. 'continuation' re-applies "
        "the optimizer's own next step from its moments; it won the benchmark on cost.")
    segments: bool = Field(
        False, description="Run predicted segments (steps without a backward pass, checked "
        "and rolled back). Off by default: on all four benchmark workloads the segments cost "
        "more than they saved against a tuned AdamW, while real steps plus the checked jumps "
        "onto the slow weights (`jump_every`) were the fastest hybrid (benchmarks/RESULTS.md). "
        "Turn on to predict steps; auto-off still stops them where they do not pay.")
    max_horizon: int = Field(
        16, ge=1, le=1024, description="Longest predicted segment. 16 was the prototype's best; "
        "longer segments are rarely accepted whole.")
    horizons: list[int] = Field(
        default_factory=lambda: [2, 4, 8, 16],
        description="Horizon arms the LinUCB bandit picks from (each <= max_horizon).")
    check_every: int = Field(
        1, ge=1, description="A forward pass verifies the prediction every k predicted steps; "
        "the last step of a segment is always verified. Larger k is cheaper but rolls back "
        "further when a check fails.")
    accept_margin: float = Field(
        0.0, ge=0.0, le=1.0, description="A verified step is accepted when the same-batch loss "
        "after it is below (1 - margin) x the loss before it. 0 accepts any improvement.")
    full_batch: bool = Field(
        False, description="Set when every step sees the same batch (full-batch training). "
        "A paired jump check then takes the last real step's loss as its 'before' (no forward "
        "of its own, the pair one step apart); inside predicted segments, paired checks reuse "
        "the previous check's loss as the next 'before' (one forward per check instead of "
        "two) and the segment verdict reuses the snapshot's loss. The calm rule "
        "(`jump_alpha_calm`) is then off: a pair one step apart measures the jump plus a "
        "step, not the jump. Wrong when batches differ: every check would compare two "
        "batches.")
    correction_interval: int = Field(
        0, ge=0, description="If > 0, one real micro-correction step every this many predicted "
        "steps inside a segment. 0 (off) measured best: the Correct phase already re-anchors.")
    rollback_tolerance: float = Field(
        0.01, ge=0.0, description="After a segment, the first batch's loss at the segment's end "
        "may exceed its loss at the segment's snapshot (the same batch, evaluated both ways) by "
        "this fraction before the whole segment is rolled back. Paired, so a small tolerance "
        "is not batch noise.")

    # --- confidence gate -----------------------------------------------------------------
    confidence_threshold: float = Field(
        0.55, ge=0.0, le=1.0, description="Predict is entered only when the confidence score "
        "reaches this value. Set from measured scores on the benchmark workloads; the trainer "
        "reports early if the components can never reach it.")
    confidence_weights: dict[str, float] = Field(
        default_factory=lambda: {"agreement": 0.5, "accuracy": 0.3, "stability": 0.2},
        description="Weights of the confidence components (must sum to 1).")
    unreachable_after: int = Field(
        50, ge=1, description="Gate evaluations after which a gate that never came within reach "
        "of its threshold is reported as unreachable.")

    # --- adaptive horizon ----------------------------------------------------------------
    bandit: bool = Field(True, description="Choose each segment's horizon with LinUCB. Off: "
                         "always use max_horizon.")
    bandit_alpha: float = Field(0.5, ge=0.0, description="LinUCB exploration strength.")
    bandit_penalty: float = Field(
        10.0, ge=0.0, description="Reward = real-step-equivalents saved - penalty x relative "
        "loss damage of the segment.")

    # --- divergence ----------------------------------------------------------------------
    divergence_sigma: float = Field(
        4.0, gt=0.0, description="A loss this many EMA standard deviations above its EMA is a "
        "divergence signal.")
    grad_explode_factor: float = Field(
        10.0, gt=1.0, description="Gradient norm above this multiple of the warmup median.")
    grad_vanish_factor: float = Field(
        0.01, gt=0.0, lt=1.0, description="Gradient norm below this multiple of the warmup median.")
    grad_norm_every: int = Field(
        4, ge=1, le=1000, description="Where nothing but the warm-up's baseline (a median) and "
        "the exploding/vanishing signals read the gradient norm (predicted segments off, or "
        "paused by auto-off), it is taken on every this many real steps; the steps between "
        "check the gradients for NaN/Inf with one fused pass instead, so a non-finite "
        "gradient is still skipped on every step. Why: on a small model the norm was the "
        "largest part of the trainer's own cost per step (`python -m "
        "benchmarks.step_cost_probe`). 1: every step.")
    ema_fast: float = Field(0.1, gt=0.0, le=1.0, description="Fast loss EMA rate.")
    ema_slow: float = Field(0.02, gt=0.0, le=1.0, description="Slow loss EMA rate.")

    # --- auto-off ------------------------------------------------------------------------
    auto_off: bool = Field(
        True, description="Stay in Full when verified progress per second in Predict is below "
        "that of real steps.")
    auto_off_min_segments: int = Field(
        6, ge=1, description="Segments observed before auto-off may decide.")
    auto_off_reprobe: int = Field(
        500, ge=0, description="Real steps after auto-off before prediction is tried again "
        "(0: never). Dynamics change during training; one probe segment is cheap.")
    cost_model: Literal["measured", "fixed"] = Field(
        "measured", description="'measured' uses wall-clock step costs in decisions (fastest); "
        "'fixed' uses `fixed_predicted_cost`, making every decision deterministic so that a "
        "resumed run is bit-identical.")
    fixed_predicted_cost: float = Field(
        0.35, gt=0.0, le=1.0, description="Cost of a verified predicted step relative to a real "
        "step under cost_model='fixed' (one forward of fwd+bwd+opt).")

    # --- predictors ----------------------------------------------------------------------
    continuation_beta: float = Field(
        0.5, ge=0.0, lt=1.0, description="Averaging of the continuation predictor: its "
        "forecast is an EMA of real updates with this decay (0 replays the last update). "
        "Longer averages track the validation loss better in isolation "
        "(python -m benchmarks.predictor_probe), but through the paired checks 0.95 did not "
        "beat 0.5 on final quality in an earlier version's runs (docs/design.md).")
    extrapolation_window: int = Field(
        8, ge=2, le=64, description="Updates kept by the extrapolation predictor "
        "(memory: this many parameter copies).")
    averaging_beta: float = Field(
        0.9, gt=0.0, lt=1.0, description="Decay of the averaging predictor's weight average "
        "and mean velocity (0.9: about the last 10 iterates).")
    averaging_window: int = Field(
        10, ge=2, le=1024, description="Real updates the averaging predictor collects after a "
        "segment before it jumps again (the average restarts at every segment).")
    rssm_members: int = Field(5, ge=1, le=16, description="GRU ensemble size of RSSM-lite.")
    rssm_rank: int = Field(4, ge=1, le=32, description="Rank of the update subspace.")
    rssm_window: int = Field(
        12, ge=4, le=64, description="Recent updates kept to fit the subspace (parameter copies).")
    rssm_hidden: int = Field(32, ge=4, le=512, description="GRU hidden size.")

    # --- slow-weight jumps ------------------------------------------------------------
    jump_every: int = Field(
        5, ge=0, le=1000, description="Every this many real steps, a checked jump onto "
        "Lookahead-style slow weights is folded into the real step (one extra forward; the "
        "step's own forward is the check). 0 turns jumps off.")
    jump_check: Literal["paired", "guard"] = Field(
        "paired", description="How a jump is checked. 'paired': one extra no-grad forward "
        "scores the checking batch without the jump, and the jump is kept when its loss did "
        "not rise (precise, one forward per jump). 'guard': no extra forward; the jump is "
        "kept unless the step's own loss at the jumped weights is a blow-up against the loss "
        "EMA (more than `divergence_sigma` standard deviations and `jump_tolerance` above it). "
        "Lookahead's synchronisation often raises the next batch's loss a little and pays "
        "later, which a paired check of one batch cannot see; but where jumps really slow "
        "training the guard keeps them too, which the paired check's auto-off prevents "
        "(benchmarks/RESULTS.md, docs/design.md).")
    jump_trust: int = Field(
        2, ge=0, le=100, description="With jump_check='paired': once this many paired checks "
        "in a row kept their jump, only every `jump_trust`-th jump runs a paired check (then "
        "fewer and fewer: `jump_trust_max_gap`) and the ones between are guard-checked (no "
        "extra forward); a paired check that rejects its jump, or a guard that catches a "
        "blow-up, returns to checking every jump. Where jumps keep paying, this saves most "
        "checks' forwards and weight swaps. 0: every jump paired.")
    jump_trust_max_gap: int = Field(
        8, ge=1, le=1000, description="With `jump_trust` >= 2: after the first `jump_trust` "
        "kept paired checks, the number of guard-checked jumps between two paired checks "
        "doubles with each further paired check that keeps its jump, up to this many. Where "
        "every check keeps its jump its forward is pure cost; the cap bounds how many jumps "
        "pass before one that stopped paying is caught. 1: every `jump_trust`-th jump paired.")
    jump_tolerance: float = Field(
        0.0, ge=0.0, le=1.0, description="A jump is kept when the checking batch's loss at the "
        "jumped weights is at most (1 + tolerance) x its loss without the jump.")
    jump_grace: int = Field(
        4, ge=0, le=1000, description="The first this many paired checks keep their jump when "
        "its loss rose by at most `jump_grace_tolerance` (and `jump_tolerance` after them). "
        "Why: the first Lookahead synchronisations pull the weights back towards the start, "
        "so they raise the next batch's loss a little even where they pay later (a few "
        "percent on a transformer), while a jump that really hurts raises it by much more "
        "(8-48% on the other benchmark workloads; `python -m benchmarks.jump_probe`).")
    jump_grace_tolerance: float = Field(
        0.05, ge=0.0, le=1.0, description="Tolerance of the first `jump_grace` paired checks "
        "(the larger of this and `jump_tolerance` applies to them).")
    jump_alpha: float = Field(
        0.5, gt=0.0, le=1.0, description="How far the slow weights move towards the weights at "
        "each jump (Lookahead's alpha); with `jump_alpha_step` > 0, the lowest it goes.")
    jump_alpha_step: float = Field(
        0.0, ge=0.0, le=0.5, description="With > 0: after each checked jump, alpha rises by "
        "this much while the loss at the jumped weights falls towards the weights the jump "
        "left (its gradient's slope along the jump: one dot product), and falls back by as "
        "much otherwise, within [`jump_alpha`, 0.9]. 0 keeps alpha fixed.")
    jump_alpha_calm: float = Field(
        0.65, ge=0.0, le=1.0, description="Alpha while the paired checks find the jumps calm, "
        "each changing its batch's loss by at most `jump_grace_tolerance` either way (a "
        "transformer whose loss falls steadily). Averaging then buys little while the pull "
        "back still costs progress; the first check that finds a larger change, either way, "
        "returns alpha to `jump_alpha` for the rest of the run. Needs paired checks of the "
        "jump alone, so it is off with `full_batch` (there a check's pair is one step apart); "
        "off with 0, with `jump_alpha` at or above it, or with `jump_alpha_step` > 0 (those "
        "set the pull themselves).")

    jump_slow_start: Literal["auto", "start", "first-jump"] = Field(
        "auto", description="Where the slow weights start. 'start': at the weights training "
        "starts from (Lookahead's choice). 'first-jump': at the weights of the first jump, "
        "which then moves nothing (the second jump is the first pull). 'auto': 'first-jump' "
        "with `full_batch`, else 'start'. Why: with one batch throughout there is no batch "
        "noise to average and the loss falls steeply from the start, so the first pull half-way "
        "back to the starting weights undoes progress and its check pays a forward to undo it; "
        "on mini-batches the first pulls raise the next batch's loss a little and pay later "
        "(shakespeare-gpt), so they stay. At a higher lr the first pull can be what steadies "
        "the start: on the benchmark's full-batch regression at twice its grid's top lr the "
        "late start took more steps than Lookahead; set 'start' there (benchmarks/RESULTS.md, "
        "\"Tuning at the grid's edge\").")

    # --- monitoring & output -------------------------------------------------------------
    monitor: bool = Field(True, description="Attach the health monitor (recommended).")
    monitor_policy: Literal["warn", "raise", "stop"] = Field(
        "warn", description="What a warning-or-worse finding does.")
    metrics_path: str | None = Field(
        None, description="If set, one JSON line per step is appended here.")
    seed: int = Field(0, ge=0, le=2**63 - 1,
                      description="Seed for the predictor's own randomness (RSSM init).")

    def inert_settings(self) -> dict[str, str]:
        """Settings changed from their defaults that this configuration never reads, each
        with the switch that would make it act. Why: predicted segments are off by default, so
        a tuned ``confidence_threshold`` or ``predictor`` would otherwise change nothing and
        say nothing (and likewise the jump settings with ``jump_every=0``,
        ``jump_alpha_calm`` where another setting sets the pull or no paired check runs, and
        ``full_batch`` where no paired check runs at all)."""
        groups = []
        if not self.segments:
            groups.append((SEGMENT_SETTINGS, "segments=True"))
        if self.jump_every == 0:
            groups.append((JUMP_SETTINGS, "jump_every > 0"))
        elif self.jump_alpha_calm > 0.0 and self.full_batch:
            groups.append((("jump_alpha_calm",), CALM_FULL_BATCH_SWITCH))   # no check sees it
        elif self.jump_alpha_calm > 0.0 and not self.calm_pull():
            groups.append((("jump_alpha_calm",), CALM_SWITCH))   # another rule sets the pull
        elif self.jump_alpha_calm > 0.0 and self.jump_check == "guard":
            groups.append((("jump_alpha_calm",), 'jump_check="paired"'))   # it never decides
        if self.full_batch and not self.segments and (self.jump_every == 0
                                                      or self.jump_check == "guard"):
            groups.append((("full_batch",), FULL_BATCH_SWITCH))
        fields = type(self).model_fields
        return {key: switch for keys, switch in groups for key in keys
                if getattr(self, key) != fields[key].get_default(call_default_factory=True)}

    def calm_pull(self) -> float:
        """The calm jumps' alpha that acts: ``jump_alpha_calm``, or 0 where the rule is off
        (asked for, or ``jump_alpha_step`` or a ``jump_alpha`` at or above it sets the pull,
        or ``full_batch``).

        Why off with ``full_batch``: there a paired check takes the last step's loss as its
        'before', so its change is the jump's plus one optimizer step's. On the diabetes MLP at
        twice the grid's top lr the first checks of one seed found +4.4% and -3.1%, 'calm'
        (the step before the first jump had lowered the loss, so that jump alone raised it by
        more than 4.4%); the calm pull of 0.65 then took 28 steps to the target on that seed
        against Lookahead's 19, and missed the target on another (benchmarks/RESULTS.md,
        "Tuning at the grid's edge")."""
        acts = (self.jump_alpha_calm > self.jump_alpha and self.jump_alpha_step == 0.0
                and not self.full_batch)
        return self.jump_alpha_calm if acts else 0.0

    def slow_start_late(self) -> bool:
        """Whether the slow weights start at the first jump (``jump_slow_start``)."""
        if self.jump_slow_start == "auto":
            return self.full_batch
        return self.jump_slow_start == "first-jump"

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = set(cls.model_fields)
            for key, value in data.items():
                ann = cls.model_fields[key].annotation if key in valid else None
                if ann in (int, float) and isinstance(value, bool) or (
                        ann == list[int] and isinstance(value, list)
                        and any(isinstance(v, bool) for v in value)):
                    raise ValueError(f"{key}: expected a number, got {value!r} (true/false is "
                                     "not a number here)")
                if ann is bool and not isinstance(value, bool) and not (
                        type(value).__module__ == "numpy"
                        and type(value).__name__ in ("bool", "bool_")):   # numpy's is fine
                    raise ValueError(f"{key}: expected true or false, got {value!r}")
            unknown = [k for k in data if k not in valid]
            if unknown:
                parts = []
                for key in unknown:
                    close = difflib.get_close_matches(str(key), sorted(valid), n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    # repr: a key holding a newline still gives a one-line message
                    parts.append(f"{str(key)!r}{hint}")
                raise ValueError(
                    f"unknown key {', '.join(parts)}; valid keys are: {', '.join(sorted(valid))}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "HybridConfig":
        if not self.horizons:
            raise ValueError("horizons: must list at least one horizon, e.g. [2, 4, 8, 16]")
        if self.predictor == "rssm" and self.rssm_rank >= self.rssm_window:
            raise ValueError(f"rssm_rank: must be smaller than rssm_window ({self.rssm_rank} >= "
                             f"{self.rssm_window}); lower rssm_rank or raise rssm_window")
        bad = [h for h in self.horizons if h < 1 or h > self.max_horizon]
        if bad:
            raise ValueError(f"horizons: {bad} outside 1..max_horizon={self.max_horizon}; "
                             "raise max_horizon or drop those arms")
        expected = {"agreement", "accuracy", "stability"}
        if set(self.confidence_weights) != expected:
            raise ValueError(f"confidence_weights: keys must be exactly {sorted(expected)}, "
                             f"got {sorted(self.confidence_weights)}")
        if any(w < 0 for w in self.confidence_weights.values()):
            raise ValueError("confidence_weights: weights must be >= 0")
        total = sum(self.confidence_weights.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"confidence_weights: must sum to 1, got {total:.4f}; rescale them")
        if self.ema_slow > self.ema_fast:
            raise ValueError("ema_slow: must be <= ema_fast (the slow EMA moves slower)")
        return self

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc)) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HybridConfig":
        """Build from a plain mapping (e.g. a TOML table); same validation as the constructor."""
        if not isinstance(data, dict):
            raise ConfigError(f"HybridConfig: expected a table/dict, got {type(data).__name__}")
        return cls(**data)


#: Settings read only by predicted segments (``segments=True``); the jumps use none of them.
SEGMENT_SETTINGS = (
    "predictor", "full_steps", "correct_steps", "max_horizon", "horizons", "check_every",
    "accept_margin", "correction_interval", "rollback_tolerance",
    "confidence_threshold", "confidence_weights", "unreachable_after", "bandit",
    "bandit_alpha", "bandit_penalty", "auto_off_min_segments", "cost_model",
    "fixed_predicted_cost", "continuation_beta", "extrapolation_window", "averaging_beta",
    "averaging_window", "rssm_members", "rssm_rank", "rssm_window", "rssm_hidden")
#: What lets ``jump_alpha_calm`` act where the pull is set otherwise.
CALM_SWITCH = "jump_alpha_step=0 and jump_alpha below jump_alpha_calm"
#: What lets ``jump_alpha_calm`` act in full-batch training: nothing but leaving it.
CALM_FULL_BATCH_SWITCH = "full_batch=False"
#: What lets ``full_batch`` act: something that compares losses on the same batch.
FULL_BATCH_SWITCH = 'segments=True, or jump_every > 0 with jump_check="paired"'
#: For each switch ``inert_settings`` can name, why the setting does nothing without it.
INERT_REASONS = {
    "segments=True": "predicted segments are off",
    "jump_every > 0": "the jumps are off",
    'jump_check="paired"': "no paired check measures the jumps",
    CALM_SWITCH: "another setting sets the pull",
    CALM_FULL_BATCH_SWITCH: "full_batch is set (a check's pair is then one step apart, so "
                            "no check measures a jump alone)",
    FULL_BATCH_SWITCH: "nothing compares two losses of one batch (no paired jump check, no "
                       "predicted segments)",
}
#: Settings read only by the jumps onto the slow weights (``jump_every`` > 0).
JUMP_SETTINGS = ("jump_check", "jump_trust", "jump_trust_max_gap", "jump_tolerance",
                 "jump_grace", "jump_grace_tolerance", "jump_alpha",
                 "jump_alpha_step", "jump_alpha_calm", "jump_slow_start")


def _one_line(exc: ValidationError) -> str:
    """Turn pydantic's multi-line report into one line per problem: 'field: message (got X)'."""
    msgs = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "config"
        msg = err.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ")
        if "input" in err and err.get("type") not in ("value_error",) and not isinstance(
                err["input"], dict):
            msgs.append(f"{loc}: {msg} (got {err['input']!r})")
        else:
            msgs.append(f"{loc}: {msg}" if not msg.startswith(loc) else msg)
    return "HybridConfig: " + "; ".join(msgs)
