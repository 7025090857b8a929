"""False alarms: varied healthy programs produce no finding of severity warning or worse.

A short version of benchmarks/monitor/healthy_programs.py, run with every expensive check
sampled densely (the harshest setting for false alarms) and with the default options.
"""
from __future__ import annotations

import warnings

import pytest

from benchmarks.monitor.healthy_programs import DENSE, HEALTHY, Healthy


def test_at_least_ten_varied_programs() -> None:
    assert len(HEALTHY) >= 10


@pytest.mark.parametrize("program", HEALTHY, ids=[h.name for h in HEALTHY])
def test_healthy_program_is_silent_under_dense_sampling(program: Healthy) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=Warning)
        run = program.run(program.test_steps, **DENSE)
    serious = [f for f in run.monitor.findings if f.severity != "info"]
    assert serious == [], run.monitor.report()
    assert run.monitor.summary()["not_run"] == []
    assert run.monitor.steps == program.test_steps


def test_checks_really_ran_on_the_healthy_programs() -> None:
    """Silence must come from checks that ran, not from checks that were skipped."""
    run = next(h for h in HEALTHY if h.name == "multitask").run(40, **DENSE)
    runs = {k: v["runs"] for k, v in run.monitor.summary()["checks"].items()}
    for name in ("gradients", "outputs", "loss-terms", "updates", "graph"):
        assert runs[name] > 0, name
