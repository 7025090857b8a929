"""Behaviour of individual checks on small, controlled inputs (edge cases and guards)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hybrid_predict_trainer.monitor import watch
from hybrid_predict_trainer.monitor.checks.graph import saved_state
from hybrid_predict_trainer.monitor.checks.representations import effective_rank
from hybrid_predict_trainer.monitor.probe import GradProbe
from hybrid_predict_trainer.monitor.util import floats, norms, shape


def _linear() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    return model, torch.optim.SGD(model.parameters(), 0.1)


# ---------------------------------------------------------------------- utilities
def test_norms_match_torch_and_handle_mixed_dtypes() -> None:
    ts = [torch.ones(4), torch.full((2, 2), 2.0, dtype=torch.float64), torch.zeros(3)]
    assert norms(ts) == pytest.approx([2.0, 4.0, 0.0])
    assert norms([]) == []


def test_floats_reads_tensors_and_numbers_together() -> None:
    assert floats([torch.tensor(1.5), 2, torch.tensor([3.0])]) == [1.5, 2.0, 3.0]


def test_shape_formats_like_python() -> None:
    assert shape(torch.zeros(5)) == "(5,)"
    assert shape(torch.Size([5, 1])) == "(5, 1)"


def test_effective_rank_of_known_spectra() -> None:
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    x = q[:, :8] * 3                       # 8 equal directions -> rank 8 after centring
    assert effective_rank(x) == pytest.approx(8, rel=0.1)
    const = torch.ones(64, 16) * 5 + 1e-9 * torch.randn(64, 16)
    assert effective_rank(const) == 1.0    # no variation at all counts as rank 1


# ---------------------------------------------------------------------- gradient probe
def test_probe_sees_reset_and_missing_reset() -> None:
    model, opt = _linear()
    probe = GradProbe(model.bias, "bias")
    x = torch.randn(4, 3)
    model(x).sum().backward()
    probe.start_cycle()
    model(x).sum().backward()              # adds to a gradient nobody reset
    assert probe.backward_seen and not probe.reset_seen
    probe.start_cycle()
    opt.zero_grad(set_to_none=False)       # zeroed in place
    model(x).sum().backward()
    assert probe.reset_seen
    probe.start_cycle()
    opt.zero_grad()                        # set to None
    model(x).sum().backward()
    model(x).sum().backward()              # second micro-batch in the same cycle
    assert probe.reset_seen
    probe.remove()
    assert not model.bias._backward_hooks


def test_gan_pattern_is_not_missing_zero_grad() -> None:
    """G's backward adds to D's gradients after D's step; D's zero_grad resets them."""
    torch.manual_seed(0)
    g, d = nn.Linear(2, 2), nn.Linear(2, 1)
    opt_g, opt_d = torch.optim.SGD(g.parameters(), 0.01), torch.optim.SGD(d.parameters(), 0.01)
    with watch(nn.ModuleDict({"g": g, "d": d}), [opt_d, opt_g], policy="raise") as mon:
        for _ in range(5):
            fake = g(torch.randn(8, 2))
            opt_d.zero_grad()
            d(fake.detach()).mean().backward()
            opt_d.step()
            opt_g.zero_grad()
            (-d(fake).mean()).backward()
            opt_g.step()
            mon.step(torch.tensor(0.0))
    assert mon.findings == []


# ---------------------------------------------------------------------- graph
def test_saved_state_distinguishes_freed_retained_and_none() -> None:
    a = torch.randn(3, requires_grad=True)
    y = a.tanh()
    node = y.grad_fn
    assert saved_state(node) == "retained"
    y.sum().backward()
    assert saved_state(node) == "freed"
    assert saved_state((a + 1.0).grad_fn) is None   # adding a number saves no tensor


def test_step_called_before_backward_is_not_a_carried_graph() -> None:
    model, opt = _linear()
    with watch(model, opt, policy="raise", graph_every=1) as mon:
        for _ in range(4):
            loss = model(torch.randn(4, 3)).pow(2).mean()
            mon.step(loss)                 # documented order is after backward; still fine
            loss.backward()
            opt.step()
            opt.zero_grad()
    assert mon.findings == []


def test_graph_built_once_outside_the_loop_is_reported() -> None:
    """A shifted parameter computed once and reused: backward through it works every step, but
    its value is stale (it never sees the updated bias) and the same graph runs every step."""
    model, opt = _linear()
    shifted = model.bias + 1.0             # built once, outside the loop; saves no tensor
    with watch(model, opt, policy="stop") as mon:
        for _ in range(4):
            loss = (model(torch.randn(4, 3)) + shifted).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    (f,) = mon.findings
    assert (f.code, f.step, f.where) == ("graph-across-steps", 2, "autograd node AddBackward0")
    assert "reaches node AddBackward0 built in step 1" in f.observed


# ---------------------------------------------------------------------- numerics
def test_non_finite_loss_names_the_first_bad_tensor() -> None:
    model, opt = _linear()
    with watch(model, opt, policy="stop") as mon:
        x = torch.randn(4, 3)
        x[0, 0] = float("nan")
        out = model(x)
        loss = out.pow(2).mean()
        loss.backward()
        opt.step()
        mon.step(loss, outputs=out)
    (f,) = [f for f in mon.findings if f.where != "gradient of 'weight'"]
    assert f.where == "outputs" and "2 of 8 values" in f.observed


def test_nan_gradient_under_finite_loss_is_reported() -> None:
    model, opt = _linear()
    with watch(model, opt, policy="stop", warmup_steps=1) as mon:
        out = model(torch.randn(4, 3))
        loss = out.sum() + 0 * torch.sqrt(torch.zeros(1, requires_grad=False) + model.weight[0, 0]
                                          - model.weight[0, 0]).sum()
        loss.backward()
        opt.step()
        mon.step(loss)
    (f,) = mon.findings
    assert (f.code, f.where) == ("non-finite", "gradient of 'weight'")
    assert math.isfinite(mon.loss_history[-1])


# ---------------------------------------------------------------------- gradients
def test_vanishing_is_silent_while_the_loss_keeps_falling() -> None:
    """Full-batch convergence shrinks gradients a hundredfold: not a vanishing gradient."""
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    y = x @ torch.randn(5, 1)
    model = nn.Linear(5, 1)
    opt = torch.optim.Adam(model.parameters(), 0.05)
    with watch(model, opt, policy="raise", grad_every=1, warmup_steps=5) as mon:
        for _ in range(300):
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    assert mon.loss_history[-1] < 1e-3 * mon.warmup_losses[0]
    assert mon.findings == []


# ---------------------------------------------------------------------- statistics
def test_constant_statistic_is_fine_while_the_loss_is_flat() -> None:
    with watch(nn.Linear(1, 1), policy="raise", stale_window=5) as mon:
        mon.track("lr", lambda: 0.1)
        for _ in range(10):
            mon.step(torch.tensor(1.0), backward=False)
    assert mon.findings == []


def test_constant_statistic_is_stale_while_the_loss_moves() -> None:
    with watch(nn.Linear(1, 1), policy="stop", stale_window=5) as mon:
        mon.track("ema", lambda: 0.0)
        mon.track("lr", lambda: 0.1, expect_moving=False)
        for i in range(10):
            mon.step(torch.tensor(2.0 - 0.1 * i), backward=False)
    (f,) = mon.findings
    assert (f.code, f.where, f.step) == ("stale-statistic", "statistic 'ema'", 5)


# ---------------------------------------------------------------------- loss terms
def _terms(mon, rows) -> None:  # type: ignore[no-untyped-def]
    for a, b in rows:
        mon.step(torch.tensor(a + b), components={"big": torch.tensor(a), "small": b},
                 backward=False)


def test_dominant_term_with_stalled_others_is_reported() -> None:
    with watch(nn.Linear(1, 1), policy="stop", components_every=1, dominance_window=6) as mon:
        _terms(mon, [(10.0, 1.0)] * 6)
    (f,) = mon.findings
    assert f.code == "loss-term-dominates" and f.where == "loss term 'big'"
    assert "90.9%" in f.observed


def test_dominant_term_is_fine_while_others_improve_or_converged() -> None:
    with watch(nn.Linear(1, 1), policy="raise", components_every=1, dominance_window=6) as mon:
        _terms(mon, [(10.0, 1.0 / (i + 1)) for i in range(6)])          # still improving
    assert mon.findings == []
    with watch(nn.Linear(1, 1), policy="raise", components_every=1, dominance_window=6) as mon:
        _terms(mon, [(10.0, 2.0)] + [(10.0, 0.01)] * 6)                 # reached its floor
    assert mon.findings == []


# ---------------------------------------------------------------------- outputs
def test_spread_collapse_after_warm_up() -> None:
    with watch(nn.Linear(1, 1), policy="stop", outputs_every=1, warmup_steps=2) as mon:
        for i in range(10):
            scale = 1.0 if i < 4 else 1e-3
            mon.step(torch.tensor(1.0), outputs=torch.linspace(0, 1, 32) * scale,
                     backward=False)
    (f,) = mon.findings
    assert f.code == "output-collapse" and f.step == 6
    assert "0.1% of its peak" in f.observed


def test_majority_class_phase_is_not_a_collapse() -> None:
    targets = torch.arange(32) % 4
    logits = torch.zeros(32, 4)
    logits[:, 0] = 1.0                     # class 0 for everyone, from the start
    with watch(nn.Linear(1, 1), policy="raise", outputs_every=1, warmup_steps=1) as mon:
        for _ in range(10):
            mon.step(torch.tensor(1.0), outputs=logits, targets=targets, backward=False)
    assert mon.findings == []


def test_classifier_that_collapses_after_learning_is_reported() -> None:
    targets = torch.arange(32) % 4
    good = F.one_hot(targets, 4).float()
    torch.manual_seed(0)
    bad = torch.randn(32, 4) * 0.3
    bad[:, 2] += 3.0                       # still spread out, but class 2 wins everywhere
    with watch(nn.Linear(1, 1), policy="stop", outputs_every=1, warmup_steps=1) as mon:
        for i in range(8):
            mon.step(torch.tensor(1.0), outputs=good if i < 3 else bad, targets=targets,
                     backward=False)
    assert [f.code for f in mon.findings] == ["output-collapse"]
    assert "class 2 predicted for every one of 32" in mon.findings[0].observed


# ---------------------------------------------------------------------- parameters
def test_frozen_parameters_are_never_reported() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    with watch(model, opt, policy="raise", update_every=2, update_patience=4) as mon:
        for _ in range(8):
            loss = model(torch.randn(4, 3)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    assert mon.findings == []


def test_optimizer_coverage_checked_at_watch_time() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD(model[0].parameters(), 0.1)
    mon = watch(model, opt, policy="stop")
    mon.close()
    (f,) = mon.findings
    assert (f.code, f.step, f.where) == ("params-not-in-optimizer", 1, "parameter '1.weight'")
    assert "2 trainable tensors (4 of 16 values)" in f.observed


def test_binary_output_that_loses_its_skill_is_reported() -> None:
    targets = (torch.arange(40) % 2).float()
    good = targets * 0.8 + 0.1            # right side of 0.5 for every element
    with watch(nn.Linear(1, 1), policy="stop", outputs_every=1, warmup_steps=1) as mon:
        for i in range(8):
            probs = good if i < 3 else 0.6 + 0.3 * torch.rand(40)   # spread, all above 0.5
            mon.step(torch.tensor(1.0), outputs=probs, targets=targets, backward=False)
    assert [f.code for f in mon.findings] == ["output-collapse"]
    assert "predicted-positive rate 100.0% while 50.0% of targets" in mon.findings[0].observed


def test_binary_output_predicting_the_majority_from_the_start_is_fine() -> None:
    targets = (torch.arange(40) % 3 == 0).float()
    with watch(nn.Linear(1, 1), policy="raise", outputs_every=1, warmup_steps=1) as mon:
        for _ in range(8):
            probs = 0.3 + 0.05 * torch.rand(40)          # below 0.5 everywhere, but spread
            mon.step(torch.tensor(1.0), outputs=probs, targets=targets, backward=False)
    assert mon.findings == []
