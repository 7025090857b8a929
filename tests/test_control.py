import numpy as np
import pytest

from hybrid_predict_trainer.control import ConfidenceGate, DivergenceMonitor, LinUCB, LossTracker
from hybrid_predict_trainer.control.divergence import Level


def test_gate_reports_unreachable_threshold_and_names_the_culprit():
    # failure case B: agreement ~0.35 (weight 0.5) against a 0.90 threshold
    gate = ConfidenceGate(0.90, {"agreement": 0.5, "accuracy": 0.3, "stability": 0.2},
                          unreachable_after=20)
    rng = np.random.default_rng(0)
    for _ in range(19):
        r = gate.evaluate({"agreement": rng.uniform(0.3, 0.4), "accuracy": 0.5,
                           "stability": 0.9})
        assert not r.is_open
        assert gate.unreachable() is None  # not judged before `unreachable_after` checks
    gate.evaluate({"agreement": 0.35, "accuracy": 0.5, "stability": 0.9})
    msg = gate.unreachable()
    assert msg is not None
    assert "'agreement'" in msg and "0.90" in msg and "cannot open" in msg


def test_gate_that_opens_is_never_reported():
    gate = ConfidenceGate(0.5, {"agreement": 0.5, "accuracy": 0.3, "stability": 0.2},
                          unreachable_after=3)
    for _ in range(10):
        gate.evaluate({"agreement": 0.8, "accuracy": 0.5, "stability": 1.0})
    assert gate.opened == 10 and gate.unreachable() is None


def test_linucb_learns_the_best_arm():
    bandit = LinUCB([2, 4, 8, 16], alpha=0.3)
    ctx = np.array([1.0, 0.7, 0.5, 0.8])
    payoff = {0: 0.1, 1: 0.9, 2: 0.3, 3: -0.5}
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(200):
        a = bandit.select(ctx)
        picks.append(a)
        bandit.update(a, ctx, payoff[a] + rng.normal(0, 0.1))
    assert picks[-50:].count(1) >= 45
    restored = LinUCB([2, 4, 8, 16], alpha=0.3)
    restored.load_state_dict(bandit.state_dict())
    assert restored.select(ctx) == bandit.select(ctx)
    with pytest.raises(ValueError, match="arms"):
        LinUCB([2, 4]).load_state_dict(bandit.state_dict())


def _tracker(values):
    t = LossTracker(0.1, 0.02)
    for v in values:
        t.update(v)
    return t


def test_divergence_levels():
    rng = np.random.default_rng(1)
    tr = _tracker(1.0 + 0.01 * rng.standard_normal(50))
    mon = DivergenceMonitor(sigma=4.0)
    for g in (1.0, 1.1, 0.9):
        mon.record_warmup(g)
    mon.freeze_baseline()
    assert mon.real_step(1.0, 1.0, tr) == []
    assert [s.level for s in mon.real_step(5.0, 1.0, tr)] == [Level.ROLLBACK]
    assert [s.name for s in mon.real_step(1.08, 1.0, tr)] == ["loss-deviation"]
    assert [s.name for s in mon.real_step(1.0, 50.0, tr)] == ["exploding-gradients"]
    assert [s.name for s in mon.real_step(1.0, 1e-4, tr)] == ["vanishing-gradients"]
    levels = [mon.nonfinite("loss").level for _ in range(3)]
    assert levels == [Level.FULL, Level.FULL, Level.RESTORE]
    assert [s.name for s in mon.check(1.0, float("nan"), None)] == ["non-finite"]
    assert [s.name for s in mon.check(1.0, 0.9, 2.0)] == ["prediction-error"]


def test_tiny_gradients_at_a_tiny_loss_are_convergence_not_vanishing():
    """A model that fits its data has tiny gradients because its loss is tiny; only a tiny
    gradient while the loss is still high is the vanishing-gradient fault."""
    mon = DivergenceMonitor(sigma=4.0)
    for g, loss in ((1.0, 2.0), (1.1, 2.1), (0.9, 1.9)):
        mon.record_warmup(g, loss)
    mon.freeze_baseline()
    assert mon.loss_baseline == 2.0
    still_high = _tracker([1.0] * 30)         # loss EMA 1.0 = half the warm-up loss
    fitted = _tracker([0.01] * 30)            # loss EMA 0.01 = 0.5% of the warm-up loss
    assert [s.name for s in mon.real_step(1.0, 1e-4, still_high)] == ["vanishing-gradients"]
    assert mon.real_step(0.01, 1e-4, fitted) == []
    restored = DivergenceMonitor()
    restored.load_state_dict(mon.state_dict())
    assert restored.loss_baseline == 2.0 and restored.real_step(0.01, 1e-4, fitted) == []


def test_oscillation_is_detected_on_the_smoothed_loss():
    mon = DivergenceMonitor()
    tr = LossTracker(0.9, 0.02)
    found = []
    for i in range(60):
        tr.update(1.0 if i % 2 else 2.0)
        found += [s.name for s in mon.real_step(1.5, 1.0, tr)]
    assert "loss-oscillation" in found


def test_loss_tracker_stability_and_zscore():
    t = _tracker([1.0] * 5 + [0.5] * 20)
    assert t.stability() == 1.0        # a falling loss is stable
    up = _tracker([1.0] * 30 + [1.5] * 5)
    assert up.stability() == 0.0       # a rising loss is not
    assert up.zscore(10.0) > 4
