"""Integration tests of HybridTrainer on a small real task (1,000 MNIST digits)."""
from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from hybrid_predict_trainer import (ConfigError, HybridConfig, HybridTrainer, HybridWarning,
                                    LossError, Phase, TrainerStateError)
from hybrid_predict_trainer.predictors import ContinuationPredictor, Forecast

from _support import batches, make_mlp

# predicted segments are off by default (the benchmark's choice); these tests are about them
EAGER = dict(monitor=False, auto_off=False, confidence_threshold=0.0, warmup_steps=5,
             full_steps=3, cost_model="fixed", segments=True)


def val_loss(model, x, y):
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))


def train(cfg: dict, data, epochs=3, opt_fn=None, seed=0, predictor=None):
    xtr, ytr, xva, yva = data
    model = make_mlp(seed)
    opt = (opt_fn or (lambda p: torch.optim.AdamW(p, lr=2e-3)))(model.parameters())
    trainer = HybridTrainer(model, opt, HybridConfig(**{"segments": True, **cfg}),
                            predictor=predictor)
    results = [trainer.step(lambda: F.cross_entropy(model(xb), yb))
               for xb, yb in batches(xtr, ytr, epochs)]
    return model, trainer, results


def test_predict_is_entered_and_predicted_steps_move_weights_without_backward(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    trainer = HybridTrainer(model, opt, HybridConfig(**EAGER))
    grad_calls = {"n": 0}
    model[0].weight.register_hook(lambda g: grad_calls.__setitem__("n", grad_calls["n"] + 1))
    moved_without_backward = 0
    for xb, yb in batches(xtr, ytr, 2):
        before_w = model[0].weight.detach().clone()
        before_calls = grad_calls["n"]
        r = trainer.step(lambda: F.cross_entropy(model(xb), yb))
        if r.predicted:
            assert not r.backward and grad_calls["n"] == before_calls
            if not torch.equal(model[0].weight, before_w):
                moved_without_backward += 1
        else:
            assert r.backward == (grad_calls["n"] == before_calls + 1)
    s = trainer.summary()
    assert s["predicted_steps"] > 0 and moved_without_backward > 0
    assert s["backward_passes"] == grad_calls["n"] < s["steps"]
    assert any(t.dst is Phase.PREDICT for t in trainer.transitions)
    assert all(t.reason for t in trainer.transitions)


def test_final_quality_stays_within_tolerance_of_plain_training(mnist_small):
    xtr, ytr, xva, yva = mnist_small
    base = make_mlp(0)
    opt = torch.optim.AdamW(base.parameters(), lr=2e-3)
    for xb, yb in batches(xtr, ytr, 15):
        loss = F.cross_entropy(base(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model, trainer, _ = train(dict(monitor=False), mnist_small, epochs=15)
    assert trainer.stats.predicted_steps > 0
    # stated tolerance: trained to convergence on the same batches, the validation loss is
    # within 3% of plain training (mid-run, predicted steps with eta < 1 can lag further)
    assert val_loss(model, xva, yva) <= 1.03 * val_loss(base, xva, yva)


def test_optimizer_state_is_untouched_by_predicted_steps(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    trainer = HybridTrainer(model, opt, HybridConfig(**EAGER, check_every=100, max_horizon=4,
                                                     horizons=[4], bandit=False))
    seen_segment = False
    prev_state = None
    for xb, yb in batches(xtr, ytr, 3):
        if trainer.phase is Phase.PREDICT and prev_state is None:
            prev_state = {k: {n: (t.clone() if torch.is_tensor(t) else t) for n, t in v.items()}
                          for k, v in opt.state_dict()["state"].items()}
        trainer.step(lambda: F.cross_entropy(model(xb), yb))
        if prev_state is not None and trainer.phase is not Phase.PREDICT:
            now = opt.state_dict()["state"]
            for k, v in prev_state.items():
                for n, t in v.items():
                    assert torch.equal(torch.as_tensor(t), torch.as_tensor(now[k][n])), (k, n)
            seen_segment = True
            break
    assert seen_segment


class _BadPredictor(ContinuationPredictor):
    """Forecasts a large step uphill: every check must fail."""

    def forecast(self, index: int) -> Forecast:
        return Forecast(delta=-50.0 * self.ema)


def test_failed_check_restores_the_exact_anchor(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    trainer = HybridTrainer(model, opt, HybridConfig(**EAGER), predictor=_BadPredictor())
    checked = 0
    for xb, yb in batches(xtr, ytr, 4):
        entering = trainer.phase is Phase.PREDICT
        snap = trainer.flat.flatten() if entering else None
        r = trainer.step(lambda: F.cross_entropy(model(xb), yb))
        if entering and r.accepted is False:
            assert torch.equal(trainer.flat.flatten(), snap)   # bit-exact restore
            checked += 1
    assert checked >= 3


def test_segment_that_made_things_worse_is_rolled_back_to_the_snapshot(mnist_small):
    """The first batch after a segment is scored at the snapshot and at the segment's end;
    here its loss penalises distance from the snapshot, so the end is provably worse and the
    trainer must restore the snapshot bit-exactly before taking the real step."""
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cfg = HybridConfig(**EAGER, max_horizon=4, horizons=[4], bandit=False)
    trainer = HybridTrainer(model, opt, cfg)
    rolled = 0
    start = None
    for xb, yb in batches(xtr, ytr, 3):
        if trainer.phase is Phase.PREDICT and trainer._seg["i"] == 0:
            start = trainer.flat.flatten()
        if trainer._correct_pending:
            snap = start.clone()
            w_snap = snap[: model[0].weight.numel()].view_as(model[0].weight)
            seen = []

            def closure():
                seen.append(trainer.flat.flatten())
                pen = 1e4 * (model[0].weight - w_snap).pow(2).sum()
                return F.cross_entropy(model(xb), yb) + pen
            r = trainer.step(closure)
            assert r.rolled_back and r.backward
            # calls: loss at snapshot, loss at segment end, graded loss after the rollback
            assert torch.equal(seen[0], snap) and not torch.equal(seen[1], snap)
            assert torch.equal(seen[2], snap)
            rolled += 1
        else:
            trainer.step(lambda: F.cross_entropy(model(xb), yb))
    assert rolled >= 2 and trainer.stats.rollbacks == rolled


def test_resume_from_checkpoint_is_bit_identical(mnist_small, tmp_path):
    xtr, ytr, _, _ = mnist_small
    cfg = dict(EAGER, predictor="rssm", rssm_window=6, rssm_rank=2, rssm_members=2,
               rssm_hidden=8, metrics_path=None)
    data = list(batches(xtr, ytr, 2))

    def run(stop_at=None, resume=None):
        torch.manual_seed(123)
        model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                    torch.nn.Dropout(0.2), torch.nn.Linear(32, 10))
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
        trainer = HybridTrainer(model, opt, HybridConfig(**cfg))
        start = 0
        if resume is not None:
            trainer.load(resume)
            start = trainer.stats.steps
        for i, (xb, yb) in enumerate(data[start:], start):
            if stop_at is not None and i == stop_at:
                trainer.save(tmp_path / "ck.pt")
                return None
            trainer.step(lambda: F.cross_entropy(model(xb), yb))
        return trainer

    full = run()
    assert full.stats.predicted_steps > 0
    # stop in the middle of a predicted segment to cover snapshot/anchor state
    stop = next(i for i in range(15, len(data))
                if any(t.step < i for t in full.transitions if t.dst is Phase.PREDICT))
    run(stop_at=stop)
    resumed = run(resume=tmp_path / "ck.pt")
    assert torch.equal(full.flat.flatten(), resumed.flat.flatten())
    assert full.stats.predicted_steps == resumed.stats.predicted_steps


@pytest.mark.parametrize("opt_fn", [
    lambda p: torch.optim.SGD(p, lr=0.05),
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=2e-3),
    lambda p: torch.optim.AdamW(p, lr=2e-3),
], ids=["sgd", "sgd-momentum", "adam", "adamw"])
def test_supported_optimizers_train_and_predict(mnist_small, opt_fn):
    model, trainer, _ = train(EAGER, mnist_small, epochs=2, opt_fn=opt_fn)
    s = trainer.summary()
    assert s["predicted_steps"] > 0
    assert val_loss(model, *mnist_small[2:]) < math.log(10)  # learned something


def test_lbfgs_is_refused_and_other_optimizers_warn():
    model = make_mlp()
    with pytest.raises(ConfigError, match="LBFGS"):
        HybridTrainer(model, torch.optim.LBFGS(model.parameters()), HybridConfig(monitor=False))
    with pytest.warns(HybridWarning, match="RMSprop"):
        HybridTrainer(model, torch.optim.RMSprop(model.parameters()), HybridConfig(monitor=False))


def test_misuse_is_refused_with_clear_errors():
    model, other = make_mlp(), make_mlp(1)
    with pytest.raises(ConfigError, match="not in the model"):
        HybridTrainer(model, torch.optim.SGD(other.parameters(), lr=0.1))
    frozen = make_mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        HybridTrainer(frozen, torch.optim.SGD(frozen.parameters(), lr=0.1))
    with pytest.raises(ConfigError, match="unknown key"):
        HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1), {"horizon": 3})
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                            HybridConfig(monitor=False))
    x = torch.randn(4, 784)
    with pytest.raises(LossError, match="returned float"):
        trainer.step(lambda: 1.0)
    with pytest.raises(LossError, match=r"shape \(4,\)"):
        trainer.step(lambda: F.cross_entropy(model(x), torch.zeros(4, dtype=torch.long),
                                             reduction="none"))
    with pytest.raises(LossError, match="closure"):
        trainer.step(F.cross_entropy(model(x), torch.zeros(4, dtype=torch.long)))


def test_nan_on_a_real_step_never_reaches_the_weights(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    trainer = HybridTrainer(model, opt, HybridConfig(monitor=False))
    for i, (xb, yb) in enumerate(batches(xtr, ytr, 1)):
        if i == 7:
            xb = xb.clone()
            xb[0, 0] = float("nan")
        r = trainer.step(lambda: F.cross_entropy(model(xb), yb))
        if i == 7:
            assert not r.backward and math.isnan(r.loss)
    assert trainer.flat.all_finite()
    assert trainer.stats.skipped_nonfinite == 1
    assert any(s.name == "non-finite" for _, s in trainer.signals)


def test_repeated_nonfinite_steps_restore_and_a_dead_model_is_fatal():
    model = make_mlp()
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                            HybridConfig(monitor=False))
    x, y = torch.randn(8, 784), torch.zeros(8, dtype=torch.long)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))   # no snapshot or checkpoint exists yet
    with pytest.raises(TrainerStateError, match="NaN/Inf"):
        for _ in range(3):
            trainer.step(lambda: F.cross_entropy(model(x), y))
    with pytest.raises(TrainerStateError, match="fatal"):
        trainer.step(lambda: F.cross_entropy(model(x), y))


def test_a_run_that_never_predicts_says_why(mnist_small):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, trainer, _ = train(dict(monitor=False, confidence_threshold=1.0, warmup_steps=5,
                                   full_steps=3, unreachable_after=10), mnist_small, epochs=3)
    reason = trainer.summary()["never_predicted_reason"]
    assert trainer.stats.predicted_steps == 0
    assert "threshold 1.00" in reason and "'" in reason
    assert any(issubclass(w.category, HybridWarning) and "gate" in str(w.message)
               for w in caught)
    _, short, _ = train(dict(monitor=False), (mnist_small[0][:300], mnist_small[1][:300],
                                              None, None), epochs=1)
    assert "before warmup_steps + full_steps" in short.summary()["never_predicted_reason"]
    # with segments off (the default) that is the reason, however short the run
    model = make_mlp(0)
    off = HybridTrainer(model, torch.optim.AdamW(model.parameters()), HybridConfig(monitor=False))
    xb, yb = mnist_small[0][:50], mnist_small[1][:50]
    off.step(lambda: F.cross_entropy(model(xb), yb))
    assert "segments are off" in off.summary()["never_predicted_reason"]


def test_auto_off_stays_in_full_when_prediction_does_not_pay(mnist_small):
    _, trainer, results = train(dict(monitor=False, confidence_threshold=0.0, warmup_steps=5,
                                     full_steps=3, auto_off_min_segments=3, cost_model="fixed",
                                     fixed_predicted_cost=1.0, auto_off_reprobe=0),
                                mnist_small, epochs=8, predictor=_BadPredictor())
    s = trainer.summary()
    assert s["auto_off"] and "does not pay" in s["auto_off"]
    last_pred = max(i for i, r in enumerate(results) if r.predicted)
    assert all(not r.predicted for r in results[last_pred + 1:])
    assert len(results) - last_pred > 20   # it stopped predicting well before the end


def test_metrics_jsonl_and_hooks(mnist_small, tmp_path):
    seen = []
    path = tmp_path / "m.jsonl"
    xtr, ytr, _, _ = mnist_small
    model = make_mlp()
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3),
                            HybridConfig(**{**EAGER, "metrics_path": str(path)}),
                            hooks=[seen.append])
    for xb, yb in batches(xtr, ytr, 1):
        trainer.step(lambda: F.cross_entropy(model(xb), yb))
    trainer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(seen) == 10 and len(lines) == 11
    assert lines[-1]["type"] == "summary" and lines[-1]["backward_passes"] >= 1
    assert {"phase", "loss", "predicted", "backward", "wall_s"} <= set(lines[0])
    s = trainer.summary()
    assert s["overhead_per_step_ms"] >= 0 and s["memory_param_copies"] >= 3


def test_multitask_closure_components_are_reported(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp()
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3),
                            HybridConfig(monitor=False))
    xb, yb = xtr[:50], ytr[:50]

    def closure():
        out = model(xb)
        ce = F.cross_entropy(out, yb)
        reg = 1e-3 * out.pow(2).mean()
        return ce + reg, {"ce": ce, "reg": reg}
    r = trainer.step(closure)
    assert set(r.components) == {"ce", "reg"}
    assert r.loss == pytest.approx(r.components["ce"] + r.components["reg"], rel=1e-5)


def test_the_bandit_chooses_horizons_and_can_be_switched_off(mnist_small):
    cfg = dict(EAGER, horizons=[2, 4, 8], max_horizon=8)
    _, on, results = train(cfg, mnist_small, epochs=6)
    horizons_on = {r.horizon for r in results if r.predicted}
    pulls = on.summary()["bandit_pulls"]
    assert sum(pulls.values()) >= 2                   # every finished segment was rewarded
    assert horizons_on <= {2, 4, 8} and horizons_on
    _, off, results = train({**cfg, "bandit": False}, mnist_small, epochs=6)
    assert {r.horizon for r in results if r.predicted} == {8}   # always max_horizon
    assert sum(off.summary()["bandit_pulls"].values()) == 0


def test_averaging_predictor_moves_the_weights_onto_the_average(mnist_small):
    """With one-step segments every predicted step is the jump onto the iterates' average:
    the weights after it must equal the anchor plus the predictor's offset, and jumps that
    the paired check accepts lower that batch's loss."""
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    opt = torch.optim.AdamW(model.parameters(), lr=8e-3)
    cfg = HybridConfig(**EAGER, predictor="averaging", horizons=[1], max_horizon=1,
                       averaging_window=5, jump_every=0)  # slow-weight jumps would pre-empt it
    trainer = HybridTrainer(model, opt, cfg)
    jumps = accepted = 0
    for xb, yb in batches(xtr, ytr, 4):
        before = trainer.flat.flatten().clone()
        expected = None
        if trainer.phase is Phase.PREDICT:
            expected = before + trainer.predictor.forecast(0).delta
        r = trainer.step(lambda: F.cross_entropy(model(xb), yb))
        if r.predicted:
            jumps += 1
            after = trainer.flat.flatten()
            if r.accepted:
                accepted += 1
                assert torch.allclose(after, expected, atol=1e-6)
            else:
                assert torch.equal(after, before)
    assert jumps >= 3 and accepted >= 1
    assert trainer.summary()["backward_passes"] < trainer.summary()["steps"]


def test_gradients_left_on_the_parameters_never_reach_the_step():
    """The trainer zeroes gradients before its own backward only when something set them;
    stale gradients must still be cleared, and a closure running backward still refused."""
    x, y = torch.randn(8, 784), torch.randint(0, 10, (8,))
    results = []
    for stale in (False, True):
        model = make_mlp(0)
        trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                                HybridConfig(monitor=False))
        if stale:
            for p in model.parameters():
                p.grad = torch.full_like(p, 1e3)
        trainer.step(lambda: F.cross_entropy(model(x), y))
        results.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
        assert all(p.grad is None for p in model.parameters())
    assert torch.equal(results[0], results[1])

    def runs_backward_itself():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss
    with pytest.raises(LossError, match="ran backward"):
        trainer.step(runs_backward_itself)


def _changed(keys):
    """A valid non-default value for each of ``keys``."""
    d = HybridConfig()
    special = {"predictor": "extrapolation", "horizons": [2, 32], "max_horizon": 32,
               "confidence_weights": {"agreement": 0.5, "accuracy": 0.25, "stability": 0.25},
               "cost_model": "fixed", "jump_check": "guard", "rssm_rank": 2,
               "jump_slow_start": "first-jump"}
    out = {}
    for k in keys:
        v = getattr(d, k)
        out[k] = (special[k] if k in special else not v if isinstance(v, bool)
                  else v + 1 if isinstance(v, int) else v * 0.5 if v else 0.1)
    return out


@pytest.mark.parametrize("base, keys", [
    ({}, "SEGMENT_SETTINGS"),                       # segments off: the default
    ({"jump_every": 0}, "JUMP_SETTINGS"),           # jumps off
])
def test_inert_settings_change_nothing_and_are_reported(mnist_small, base, keys):
    """What inert_settings() reports must really be unread: training with every one of them
    changed ends on bit-identical weights, and the trainer warns about each."""
    from hybrid_predict_trainer import config as config_module

    keys = getattr(config_module, keys)
    changed = _changed(keys)
    xtr, ytr, _, _ = mnist_small
    finals = []
    for cfg in (HybridConfig(monitor=False, **base),
                HybridConfig(monitor=False, **base, **changed)):
        assert set(cfg.inert_settings()) == (set(keys) if cfg.inert_settings() else set())
        model = make_mlp(0)
        opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = HybridTrainer(model, opt, cfg)
        said = [str(w.message) for w in caught if issubclass(w.category, HybridWarning)]
        assert bool(said) == bool(cfg.inert_settings())
        assert all(k in " ".join(said) for k in cfg.inert_settings())
        for xb, yb in batches(xtr, ytr, 3):     # 30 steps: six jumps, when they are on
            trainer.step(lambda: F.cross_entropy(model(xb), yb))
        finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(finals[0], finals[1])


def test_a_predictor_object_with_segments_off_is_reported():
    model = make_mlp(0)
    with pytest.warns(HybridWarning, match="the predictor passed to HybridTrainer"):
        HybridTrainer(model, torch.optim.AdamW(model.parameters()), HybridConfig(monitor=False),
                      predictor=ContinuationPredictor())
