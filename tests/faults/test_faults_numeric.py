"""NaN/Inf injections, a learning-rate spike and a loss explosion, injected into real training
(MLP on 1,000 MNIST digits, 150 steps, health monitor on, ``cost_model="fixed"`` so that the
faulted run equals the clean run bit for bit until the fault). See
``benchmarks/faults/numeric.py`` for the four properties each fault is checked for."""
from __future__ import annotations

import pytest
import torch

from benchmarks.faults import numeric
from benchmarks.faults.workload import rollback_matches, train


CASES = {
    "nan-batch-real-step": lambda wl: numeric.NanInBatch(24, "full"),
    "nan-batch-predicted-step": lambda wl: numeric.NanInBatch(35, "predict"),
    "nan-loss": lambda wl: numeric.NanLoss(24, "full"),
    "inf-gradient": pytest.param(lambda wl: numeric.InfGradient(24)),
    "nan-in-forecast": lambda wl: numeric.NanInForecast(35, wl),
    "nan-parameter-predict-phase": pytest.param(
        lambda wl: numeric.NanInParameter(35, "predict")),
    "nan-parameter-full-phase": pytest.param(
        lambda wl: numeric.NanInParameter(24, "full")),
    "lr-spike-real-step": lambda wl: numeric.LrSpike(24, "full"),
    "lr-spike-predicted-step": lambda wl: numeric.LrSpike(35, "predict"),
    "loss-explosion-full-phase": lambda wl: numeric.LossExplosion(24, "full", 10.0),
    "loss-explosion-predict-phase": lambda wl: numeric.LossExplosion(35, "predict", 10.0),
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_fault_is_survived(make, fault_workload, clean_run):
    fault = make(fault_workload)
    rec = numeric.evaluate(fault, fault_workload, clean_run)
    assert rec["injected"], rec
    assert rec["error"] is None, rec["error"]
    # recovered: finite weights and a visible skip / rejected check / rollback / restore
    assert rec["recovered"], rec["phases"]
    # the source is named by a trainer signal, and by the monitor's non-finite finding
    assert rec["signal_names_source"], rec["signals"]
    assert rec["finding_names_source"], rec["findings"]
    # nothing before the segment the fault hit is lost
    assert rec["lost_within_segment"], (rec["restore_floor"], rec["segment_start"])
    if rec["kind"] == "nan":
        assert rec["quality_ok"], rec["val_ratio"]          # val loss within 5% of clean
    if not isinstance(fault, numeric.NanInParameter) and rec["kind"] == "nan":
        assert rec["steps_lost"] <= 1                        # one skipped or rejected step


def test_nan_parameter_with_a_checkpoint_restores_it(fault_workload, clean_run, tmp_path):
    """RESTORE reloads the last checkpoint: at most the steps since it are lost."""
    fault = numeric.NanInParameter(24, "full")
    run = train(fault_workload, fault, checkpoint=tmp_path / "ck.pt", checkpoint_every=10)
    assert run.error is None and run.trainer.flat.all_finite()
    assert any("restored checkpoint" in (r.transition or "") for r in run.results)
    lost = max(t - s for t, s in rollback_matches(clean_run, run, fault.injected[0]))
    assert lost <= 10 + 3                    # checkpoint interval + the non-finite streak
    assert run.final_val <= 1.05 * clean_run.final_val


def test_a_blown_up_loss_never_reaches_the_optimizer(fault_workload, clean_run):
    """A demanding user expects the rollback to be clean: no optimizer step is ever taken on
    gradients from the exploded weights (they would stay in Adam's second moment for
    hundreds of steps and slow training beyond the lost segment)."""
    norms: dict[int, float] = {}
    fault = numeric.LossExplosion(24, "full", 10.0)

    class Recorder(numeric.Fault):
        needs_predictor = None

        def before(self, ctx):
            if not hasattr(self, "_hooked"):
                self._hooked = ctx.optimizer.register_step_pre_hook(
                    lambda opt, a, k: norms.__setitem__(self.i, float(torch.linalg.vector_norm(
                        torch.stack([p.grad.norm() for g in opt.param_groups
                                     for p in g["params"] if p.grad is not None])))))
            self.i = ctx.index
            return fault.before(ctx)

        def after(self, ctx, result):
            fault.after(ctx, result)

    run = train(fault_workload, Recorder())
    assert fault.injected == [24] and run.error is None
    typical = max(norms[i] for i in range(15, 24))
    assert max(v for i, v in norms.items() if i >= 24) <= 3 * typical
