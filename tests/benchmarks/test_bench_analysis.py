"""Time-to-target arithmetic: smoothing, interpolated crossings, equal-time losses."""
from __future__ import annotations

import pytest

from benchmarks.analysis import (crossing, curve_jitter_pct, end_drop_pct, loss_at_time,
                                 smoothed, spread, tail_mean)
from benchmarks.costs import physical_bound


def _curve(vals: list[float], dt: float = 1.0, every: int = 10) -> list:
    return [(i * every, i * dt, i * every, 0, v) for i, v in enumerate(vals)]


def test_crossing_interpolates_between_evaluations() -> None:
    pts = _curve([4.0, 3.0, 2.0, 1.0])
    t, steps, bwd = crossing(pts, 2.5, smooth=False)
    assert t == pytest.approx(1.5) and steps == pytest.approx(15) and bwd == pytest.approx(15)
    assert crossing(pts, 0.5, smooth=False) is None
    assert crossing(pts, 5.0, smooth=False) == (0.0, 0.0, 0.0)


def test_smoothing_ignores_a_single_lucky_dip() -> None:
    pts = _curve([3.0, 2.0, 1.0, 2.0, 2.0, 2.0])
    assert crossing(pts, 1.2, smooth=False) is not None      # the raw curve dips once
    assert crossing(pts, 1.2) is None                       # its running mean never does
    assert smoothed(pts)[2][4] == pytest.approx(2.0)
    # The baseline's running mean ends exactly at its tail mean, so it reaches its target.
    assert crossing(pts, tail_mean(pts) * 1.005) is not None


def test_loss_at_time() -> None:
    pts = _curve([4.0, 2.0, 1.0], dt=2.0)
    assert loss_at_time(pts, 1.0) == pytest.approx(3.0)
    assert loss_at_time(pts, 99.0) == pytest.approx(1.0)


def test_curve_diagnostics() -> None:
    straight = _curve([5.0, 4.0, 3.0, 2.0, 1.0])
    assert curve_jitter_pct(straight) == pytest.approx(0.0)
    assert curve_jitter_pct(_curve([5.0, 4.0, 3.0, 2.0, 3.0, 2.0, 3.0])) > 10.0
    assert end_drop_pct(_curve([2.0] * 10)) == pytest.approx(0.0)
    assert end_drop_pct(straight) > 0


def test_spread_and_bound() -> None:
    assert spread([None, 2.0, 1.0, 3.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert spread([None]) == {"median": None, "min": None, "max": None}
    assert physical_bound(0.0) == pytest.approx(1.0)
    assert physical_bound(0.75) == pytest.approx(2.0)
