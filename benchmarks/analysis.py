"""From evaluation curves to the reported numbers: time to target, speed-ups, equal-time quality.

Why linear interpolation between evaluations: evaluations are every ``eval_every`` steps, so
the first evaluation below the target overstates the time by up to one interval. Interpolating
the crossing (in time, steps and backward passes alike) removes that bias equally for every
method; it assumes the loss falls roughly linearly within one interval.
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Sequence

Point = tuple[int, float, int, int, float]   # step, train seconds, backward, predicted, val

TARGET_SLACK = 1.005
SMOOTH = 3


def final_loss(points: Sequence[Point]) -> float:
    """Validation loss at the last evaluation."""
    return points[-1][4]


def tail_mean(points: Sequence[Point], n: int = SMOOTH) -> float:
    """Mean of the last ``n`` evaluations: "the loss at the budget", damping one lucky eval."""
    tail = [p[4] for p in points[-n:]]
    return sum(tail) / len(tail)


def target_loss(points: Sequence[Point]) -> float:
    """The target a run sets for the others: its loss at the budget plus the 0.5% slack."""
    return tail_mean(points) * TARGET_SLACK


def smoothed(points: Sequence[Point], n: int = SMOOTH) -> list[Point]:
    """The curve with each loss replaced by the mean of the last ``n`` evaluations so far.

    Why: with a noisy curve the first raw evaluation under a target 0.5% away is mostly luck.
    The target itself is the baseline's mean of its last ``n`` evaluations, so a method
    "reaches" it when its own running mean does; the baseline's running mean always ends
    exactly at the target / 1.005. The lag this adds is ``n - 1`` evaluations for every method.
    """
    out = []
    for i, p in enumerate(points):
        window = [q[4] for q in points[max(0, i - n + 1):i + 1]]
        out.append((p[0], p[1], p[2], p[3], sum(window) / len(window)))
    return out


def crossing(points: Sequence[Point], target: float,
             smooth: bool = True) -> tuple[float, float, float] | None:
    """(seconds, steps, backward passes) at which the (smoothed) curve first reaches ``target``.

    None when it never does.
    """
    if smooth:
        points = smoothed(points)
    prev = points[0]
    if prev[4] <= target:
        return 0.0, 0.0, 0.0
    for cur in points[1:]:
        if cur[4] <= target:
            drop = prev[4] - cur[4]
            frac = (prev[4] - target) / drop if drop > 0 else 1.0
            return tuple(a + frac * (b - a) for a, b in  # type: ignore[return-value]
                         ((prev[1], cur[1]), (prev[0], cur[0]), (prev[2], cur[2])))
        prev = cur
    return None


def loss_at_time(points: Sequence[Point], seconds: float) -> float:
    """Validation loss after ``seconds`` of training time (interpolated; last value if earlier)."""
    prev = points[0]
    for cur in points[1:]:
        if cur[1] >= seconds:
            span = cur[1] - prev[1]
            frac = (seconds - prev[1]) / span if span > 0 else 1.0
            return prev[4] + frac * (cur[4] - prev[4])
        prev = cur
    return points[-1][4]


def end_drop_pct(points: Sequence[Point], fraction: float = 0.2) -> float:
    """Relative fall of the loss over the last ``fraction`` of the steps, in percent.

    The budget should end while the loss still clearly falls; a value near zero means the
    target sits on a plateau, where every method looks equally fast.
    """
    last_step = points[-1][0]
    start = min(points, key=lambda p: abs(p[0] - (1.0 - fraction) * last_step))
    return 100.0 * (start[4] - points[-1][4]) / start[4]


def curve_jitter_pct(points: Sequence[Point], fraction: float = 0.5) -> float:
    """Typical evaluation-to-evaluation wobble over the second half of a curve, in percent.

    Median absolute second difference divided by the loss: a straight falling curve gives 0;
    one that goes up and down between evaluations gives a positive value. A target only 0.5%
    above the baseline's final loss is meaningful when this is well below 0.5%.
    """
    vals = [p[4] for p in points if p[0] >= (1.0 - fraction) * points[-1][0]]
    if len(vals) < 3:
        return 0.0
    second = [abs(vals[i + 1] - 2 * vals[i] + vals[i - 1]) / 2 / vals[i]
              for i in range(1, len(vals) - 1)]
    return 100.0 * statistics.median(second)


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """Median, min and max of the values that exist (None when none do)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(present), "min": min(present), "max": max(present)}


def median_or_none(values: Sequence[Any]) -> Any:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def head_to_head(ours: Sequence[dict[str, Any]],
                 theirs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Seed-by-seed comparison of two methods that trained side by side on the same seeds.

    Why: a median speed-up per method hides whether one method beats the other on the same
    batches and the same machine state; the seeds one wins, and the median of the per-seed
    ratios (their time to target / ours), say it directly. A seed where only one reached the
    target counts as that one's win (ratio inf or 0); a seed where neither did is left out.
    Rows are the report's ``per_seed`` entries (``seed``, ``time_to_target_s``).
    """
    times = {r["seed"]: r.get("time_to_target_s") for r in theirs}
    ratios: list[float] = []
    for row in ours:
        if row["seed"] not in times:
            continue
        a, b = row.get("time_to_target_s"), times[row["seed"]]
        if a is None and b is None:
            continue
        ratios.append(math.inf if b is None else 0.0 if a is None else b / a)
    if not ratios:
        return None
    wins, losses = sum(r > 1.0 for r in ratios), sum(r < 1.0 for r in ratios)
    return {"seeds": len(ratios), "wins": wins, "median_ratio": statistics.median(ratios),
            "min_ratio": min(ratios), "max_ratio": max(ratios),
            "sign_p": sign_test_p(wins, losses)}


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how likely a split at least this uneven is when either
    method is as likely to win a seed (ties left out). Why: with 3 to 7 seeds a median
    ratio of 0.96x or 1.04x may be the seeds' spread, not a difference between the methods;
    the p value says whether the seeds resolve it (7 of 7 gives 0.016, 1 of 7 gives 0.125)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1))
    return min(1.0, 2.0 * tail / 2 ** n)
