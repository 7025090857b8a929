"""Recall: every finding code fires on a program with the bug and stays silent on its twin.

The programs live in benchmarks/monitor/reproductions.py so that the recall benchmark runs the
very same code at full length; here they run with few steps.
"""
from __future__ import annotations

import warnings

import pytest

from benchmarks.monitor.reproductions import REPRODUCTIONS, Reproduction
from hybrid_predict_trainer.errors import HealthError
from hybrid_predict_trainer.monitor import CODES

_IDS = [f"{r.code}:{r.variant or r.name}" for r in REPRODUCTIONS]


def _serious(run):  # type: ignore[no-untyped-def]
    return [f for f in run.monitor.findings if f.severity != "info"]


def test_every_code_has_a_reproduction() -> None:
    assert {r.code for r in REPRODUCTIONS} == set(CODES)


@pytest.mark.parametrize("repro", REPRODUCTIONS, ids=_IDS)
def test_bug_is_reported(repro: Reproduction) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = repro.run(fixed=False, steps=repro.test_steps, policy="stop")
    codes = [f.code for f in _serious(run)]
    assert repro.code in codes, run.monitor.report()
    finding = next(f for f in run.monitor.findings if f.code == repro.code)
    assert finding.where and finding.observed and finding.expected and finding.suggestion
    assert any(ch.isdigit() for ch in finding.observed)      # observed carries numbers
    assert run.monitor.should_stop


@pytest.mark.parametrize("repro", REPRODUCTIONS, ids=_IDS)
def test_fixed_twin_is_silent(repro: Reproduction) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # not even a HealthWarning may appear
        run = repro.run(fixed=True, steps=repro.test_steps)
    assert _serious(run) == [], run.monitor.report()
    assert run.error is None


def test_carried_graph_is_reported_before_backward_fails() -> None:
    repro = next(r for r in REPRODUCTIONS if r.variant == "error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = repro.run(fixed=False, steps=5, policy="stop")
    assert run.error is not None and "second time" in str(run.error)
    (finding,) = [f for f in run.monitor.findings if f.code == "graph-across-steps"]
    assert finding.step == 2 and "reaches node" in finding.observed
    assert "built in step 1" in finding.observed


def test_carried_graph_raises_health_error_instead_under_raise() -> None:
    repro = next(r for r in REPRODUCTIONS if r.variant == "error")
    run = repro.run(fixed=False, steps=5, policy="raise")   # the program keeps what it died of
    assert isinstance(run.error, HealthError)
    assert run.error.finding.code == "graph-across-steps" and run.monitor.steps == 1


@pytest.mark.parametrize("variant", ["functional", "module", "imported"])
def test_broadcast_raises_at_the_first_call_under_raise(variant: str) -> None:
    repro = next(r for r in REPRODUCTIONS if r.variant == variant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(HealthError) as info:
            repro.run(fixed=False, steps=5, policy="raise")
    assert info.value.finding.code == "loss-broadcast" and info.value.finding.step == 1
    assert "(64, 64)" in info.value.finding.observed


def test_case_f_dominance_names_the_term_and_share() -> None:
    repro = next(r for r in REPRODUCTIONS if r.code == "loss-term-dominates")
    run = repro.run(fixed=False, steps=repro.test_steps, policy="stop")
    f = next(f for f in run.monitor.findings if f.code == "loss-term-dominates")
    assert f.where == "loss term 'countdown'"
    share = float(f.observed.split("% of the total")[0].split(" is ")[-1])
    assert share > 80


def test_zero_grad_check_respects_deliberate_accumulation() -> None:
    repro = next(r for r in REPRODUCTIONS if r.code == "missing-zero-grad")
    run = repro.run(fixed=False, steps=3, policy="stop", accumulation_steps=5)
    assert not run.monitor.has("missing-zero-grad")
    run = repro.run(fixed=False, steps=7, policy="stop", accumulation_steps=5)
    assert run.monitor.has("missing-zero-grad")
