"""The step-cost probe: it times every row on the real workload, times the gradient-norm
check inside the default's runs only, and splits the default's extra cost so the parts add up."""
from __future__ import annotations

import pytest
import torch

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
    assert "gradient check" in out and "rest of the bookkeeping" in out


def test_warm_steps_sets_how_many_steps_of_each_run_go_untimed(monkeypatch) -> None:
    made: list[list[int]] = []
    real = probe._runner

    class Counting:
        def __init__(self, runner) -> None:
            self.runner, self.count = runner, [0]
            made.append(self.count)

        def __getattr__(self, name):   # the default's trainer, stats()
            return getattr(self.runner, name)

        def step(self, x, y):
            self.count[0] += 1
            return self.runner.step(x, y)

    monkeypatch.setattr(probe, "_runner", lambda *a: Counting(real(*a)))
    probe.measure("tabular-fullbatch", runs=1, steps=2, lr=0.016, warm_steps=0)
    assert [c[0] for c in made] == [2] * len(probe.ROWS)
    made.clear()
    probe.measure("tabular-fullbatch", runs=1, steps=2, lr=0.016, warm_steps=3)
    assert [c[0] for c in made] == [5] * len(probe.ROWS)


def test_main_refuses_a_negative_warm_up_naming_the_flag(capsys) -> None:
    with pytest.raises(SystemExit):
        probe.main(["--warm-steps", "-1"])
    assert "--warm-steps is -1" in capsys.readouterr().err


def test_threads_sets_torchs_threads_for_the_probe_and_restores_them(monkeypatch, capsys) -> None:
    seen: list[int] = []
    monkeypatch.setattr(probe, "measure", lambda *a, **k: (
        seen.append(torch.get_num_threads()) or {**{r: 100.0 for r in probe.ROWS},
                                                 "grad_norm_check": 1.0}))
    before = torch.get_num_threads()
    probe.main(["--threads", "2"])
    assert seen == [2] and torch.get_num_threads() == before
    assert "(2 threads)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        probe.main(["--threads", "0"])
