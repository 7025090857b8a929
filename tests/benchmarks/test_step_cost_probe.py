"""The step-cost probe: it times every row on the real workload, times the gradient-norm
check inside the default's runs only, and splits the default's extra cost so the parts add up."""
from __future__ import annotations

import pytest

from benchmarks import step_cost_probe as probe


def test_split_attributes_the_jumps_beyond_lookaheads_own() -> None:
    us = {"adamw": 400.0, "lookahead": 410.0, "default": 470.0, "default-no-jumps": 450.0,
          "grad_norm_check": 20.0}
    parts = probe.split(us)
    assert parts["extra"] == pytest.approx(60.0)
    # the jumps cost the default 20 us a step, Lookahead's own synchronisation 10
    assert parts["jumps"] == pytest.approx(10.0)
    assert parts["rest"] == pytest.approx(30.0)
    assert parts["grad_norm_check"] + parts["jumps"] + parts["rest"] == pytest.approx(
        parts["extra"])


def test_measure_times_every_row_and_the_check_inside_the_default() -> None:
    us = probe.measure("tabular-fullbatch", runs=2, steps=5, lr=0.016)
    assert set(us) == {*probe.ROWS, "grad_norm_check"}
    assert all(v > 0 for v in us.values())
    # the check is part of the default's step, not of the whole step
    assert us["grad_norm_check"] < us["default"]


def test_main_prints_each_row_and_the_split(capsys: pytest.CaptureFixture[str]) -> None:
    probe.main(["--runs", "1", "--steps", "3", "--lr", "0.016"])
    out = capsys.readouterr().out
    for row in probe.ROWS:
        assert row in out
    assert "gradient-norm check" in out and "rest of the bookkeeping" in out
