"""The trainer's small parts on their own: the progress meter behind eta and auto-off, the
random-number state of checkpoints, and the checkpoint fit checks."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hybrid_predict_trainer import CheckpointError, HybridConfig, HybridTrainer
from hybrid_predict_trainer.trainer.fit import check_fits
from hybrid_predict_trainer.trainer.progress import ProgressMeter
from hybrid_predict_trainer.trainer.rng import global_rng_state, set_global_rng_state


def _probed(drop: float, n: int = ProgressMeter.MIN_PROBES) -> ProgressMeter:
    meter = ProgressMeter()
    for _ in range(n):
        meter.record_probe(1.0, 1.0 - drop)
    return meter


def test_a_drop_counts_as_accepted_steps_until_enough_real_steps_were_probed():
    meter = _probed(0.01, n=ProgressMeter.MIN_PROBES - 1)
    assert meter.real_equivalents(0.5, 4) == 4.0
    meter.record_probe(1.0, 0.99)
    assert meter.real_equivalents(0.02, 4) == pytest.approx(2.0)   # 0.02 / 0.01


@settings(max_examples=200, deadline=None)
@given(drop=st.floats(-1.0, 1.0), real=st.floats(-0.5, 0.5), accepted=st.integers(0, 50))
def test_real_equivalents_are_bounded_by_twice_the_accepted_steps(drop, real, accepted):
    meter = _probed(real)
    worth = meter.real_equivalents(drop, accepted)
    assert -2.0 * max(accepted, 1) <= worth <= 2.0 * accepted


def test_nonfinite_or_nonpositive_probes_are_not_recorded():
    meter = ProgressMeter()
    for before, after in ((float("nan"), 1.0), (1.0, float("inf")), (0.0, -1.0)):
        meter.record_probe(before, after)
    assert meter.probes == 0 and meter.real_drop == 0.0


def test_eta_is_a_segment_step_worth_in_real_steps():
    meter = _probed(0.01)
    assert meter.eta() == 1.0                       # no segment yet
    assert meter.segment_progress(0.03, 2) == pytest.approx(3.0)
    assert meter.eta() == pytest.approx(1.5)        # 0.015 a predicted step, 0.01 a real one


def test_wall_time_is_in_real_steps_once_a_real_step_was_timed():
    meter = ProgressMeter()
    assert meter.steps_worth(0.5) is None
    meter.real_step_time(0.2)
    meter.real_step_time(0.4)                       # EMA: 0.2 + 0.1 * 0.2
    assert meter.steps_worth(0.44) == pytest.approx(2.0)


def test_the_meter_round_trips_under_the_checkpoint_keys():
    meter = _probed(0.02)
    meter.real_step_time(0.1)
    meter.segment_progress(0.05, 3)
    for _ in range(7):
        meter.real_step_recorded()
    state = meter.state_dict()
    assert set(state) == {"t_real", "d_real", "seg_drop_sum", "seg_accepted_sum",
                          "n_real_probe", "real_since_probe"}
    again = ProgressMeter()
    again.load_state_dict(state)
    assert again.state_dict() == state and again.eta() == meter.eta()


def test_the_global_rng_state_restores_every_generator():
    state = global_rng_state()
    first = (torch.rand(3), random.random(), np.random.rand(2))
    set_global_rng_state(state)
    again = (torch.rand(3), random.random(), np.random.rand(2))
    assert torch.equal(first[0], again[0]) and first[1] == again[1]
    assert np.array_equal(first[2], again[2])
    assert all(isinstance(v, (torch.Tensor, list, dict)) for v in state.values())


def _trainer(width: int = 3, predictor: str = "continuation") -> HybridTrainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(width, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    return HybridTrainer(model, opt, HybridConfig(monitor=False, predictor=predictor))


@pytest.mark.parametrize("change, message", [
    (lambda s: s["model"].update(weight=torch.zeros(1, 5)), "'weight' has shape"),
    (lambda s: s["model"].pop("bias"), "'bias' is missing in the file"),
    (lambda s: s["trainer"].update(numel=99), "covers 99 parameters"),
    (lambda s: s["predictor"].update(name="rssm"), "set predictor='rssm'"),
])
def test_a_checkpoint_that_does_not_fit_is_named_before_loading(change, message):
    trainer = _trainer()
    state = trainer.state_dict()
    change(state)
    with pytest.raises(CheckpointError, match=message):
        check_fits(state, trainer.model, trainer.flat.numel, trainer.optimizer, "continuation")
    trainer_weights = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(CheckpointError, match=message):
        trainer.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(trainer_weights, trainer.model.parameters()))


def test_a_checkpoint_that_fits_passes():
    trainer = _trainer()
    check_fits(trainer.state_dict(), trainer.model, trainer.flat.numel, trainer.optimizer,
               "continuation")


def test_a_probe_is_due_every_probe_every_recorded_real_steps():
    meter = ProgressMeter()
    for _ in range(ProgressMeter.PROBE_EVERY - 1):
        meter.real_step_recorded()
    assert not meter.probe_ready()
    meter.real_step_recorded()
    assert meter.probe_ready()
    meter.probe_started()
    assert not meter.probe_ready()
