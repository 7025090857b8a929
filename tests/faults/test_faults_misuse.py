"""Misuse: every mistake gets one clear line from an HPTError subclass, and an exception from
the user's own closure propagates unchanged and leaves the trainer as it was.

Decision (documented in docs/reliability.md): an exception raised *inside* the user's closure
(a shape mismatch, an out-of-memory error, a KeyError in their data code) is the user's own,
with their own traceback pointing at their line; wrapping it would hide it. The trainer
re-raises it untouched, and guarantees that the weights are exactly as before the step, so a
loop that catches it and skips the batch trains on correctly."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hybrid_predict_trainer import (CheckpointError, ConfigError, HPTError, HybridConfig,
                                    HybridTrainer, LossError, TrainerStateError)
from hybrid_predict_trainer.checkpoint import save_atomic

from benchmarks.faults.workload import Workload, make_model

X = torch.randn(8, 784, generator=torch.Generator().manual_seed(0))
Y = torch.arange(8) % 10


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    return msg


def quiet_trainer(model, opt, **cfg) -> HybridTrainer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HybridTrainer(model, opt, HybridConfig(**{"monitor": False, "segments": True,
                                                         **cfg}))


def test_model_without_trainable_parameters():
    frozen = make_model(0, 16)
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError) as info:
        quiet_trainer(frozen, torch.optim.SGD(frozen.parameters(), lr=0.1))
    assert "no trainable parameters" in one_line(info.value) and "unfreeze" in str(info.value)


def test_model_with_no_parameters_at_all():
    other = make_model(1, 16)
    with pytest.raises(ConfigError) as info:
        quiet_trainer(torch.nn.ReLU(), torch.optim.SGD(other.parameters(), lr=0.1))
    assert "not in the model" in one_line(info.value)


def test_optimizer_that_does_not_own_the_models_parameters():
    model, other = make_model(0, 16), make_model(1, 16)
    with pytest.raises(ConfigError) as info:
        quiet_trainer(model, torch.optim.AdamW(other.parameters()))
    msg = one_line(info.value)
    assert "not in the model" in msg and "AdamW(model.parameters())" in msg


def test_optimizer_over_part_of_the_model_never_moves_the_rest():
    """Fine-tuning a head: parameters outside the optimizer are never touched, predicted
    steps included."""
    wl = Workload(steps=60, hidden=16, monitor=False,
                  config=dict(warmup_steps=5, full_steps=3, confidence_threshold=0.0))
    data, _, _ = wl.data()
    model = make_model(0, 16)
    body = model[0].weight.detach().clone()
    opt = torch.optim.AdamW(model[2].parameters(), lr=2e-3)
    trainer = quiet_trainer(model, opt, **wl.config)
    for xb, yb in data:
        trainer.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
    assert trainer.stats.predicted_steps > 0
    assert torch.equal(model[0].weight, body)


@pytest.mark.parametrize("bad, expected", [
    (lambda m: 1.0, "returned float"),
    (lambda m: None, "returned NoneType"),
    (lambda m: np.float32(1.0), "returned float32"),
    (lambda m: "loss", "returned str"),
    (lambda m: {"loss": F.cross_entropy(m(X), Y)}, "returned dict"),
    (lambda m: (F.cross_entropy(m(X), Y), F.cross_entropy(m(X), Y)), "returned tuple"),
    (lambda m: F.cross_entropy(m(X), Y, reduction="none"), r"shape \(8,\)"),
    (lambda m: F.cross_entropy(m(X), Y).detach(), "does not require grad"),
    (lambda m: torch.tensor(3), "does not require grad"),
], ids=["float", "none", "numpy", "str", "dict", "tuple", "non-scalar", "detached", "int"])
def test_closure_returning_a_bad_loss(bad, expected):
    model = make_model(0, 16)
    trainer = quiet_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    before = trainer.flat.flatten()
    with pytest.raises(LossError, match=expected) as info:
        trainer.step(lambda: bad(model))
    assert "closure" in one_line(info.value)
    assert torch.equal(trainer.flat.flatten(), before) and trainer.stats.steps == 0


def test_step_without_a_closure():
    model = make_model(0, 16)
    trainer = quiet_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    for bad in (None, F.cross_entropy(model(X), Y), 3):
        with pytest.raises(LossError) as info:
            trainer.step(bad)
        assert "trainer.step(lambda" in one_line(info.value)


def test_bad_constructor_arguments():
    model = make_model(0, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for args in [(model, opt, "fast"), ("model", opt), (model, "adam"),
                 (model, opt, {"warmup": 3})]:
        with pytest.raises(ConfigError) as info:
            HybridTrainer(*args)
        one_line(info.value)
    with pytest.raises(ConfigError, match="LBFGS"):
        HybridTrainer(model, torch.optim.LBFGS(model.parameters()))


def test_loading_a_missing_file_or_a_folder(tmp_path):
    model = make_model(0, 16)
    trainer = quiet_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    for path in (tmp_path / "missing.pt", tmp_path):
        with pytest.raises(CheckpointError) as info:
            trainer.load(path)
        assert str(path) in one_line(info.value)


def test_shape_error_in_the_users_loss_propagates_unchanged():
    """The user's own exception: same object, same message, same traceback origin; the
    trainer is unchanged and the next good step works."""
    model = make_model(0, 16)
    trainer = quiet_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    raised = []

    def bad():
        try:
            return F.cross_entropy(model(X[:, :100]), Y)     # 100 features into Linear(784)
        except RuntimeError as exc:
            raised.append(exc)
            raise
    before = trainer.flat.flatten()
    with pytest.raises(RuntimeError) as info:
        trainer.step(bad)
    assert raised and info.value is raised[0]
    assert not isinstance(info.value, HPTError)
    assert torch.equal(trainer.flat.flatten(), before) and trainer.stats.steps == 0
    trainer.step(lambda: F.cross_entropy(model(X), Y))
    assert trainer.stats.steps == 1


@pytest.mark.parametrize("check_every", [1, 2])
def test_a_closure_exception_at_any_step_leaves_the_weights_as_they_were(check_every):
    """For every step of a run (warm-up, Full, Predict, Correct) and the closure's first or
    second call in that step: the exception propagates unchanged and the weights are exactly
    those before the step."""
    wl = Workload(steps=70, hidden=16, monitor=False,
                  config=dict(warmup_steps=5, full_steps=3, confidence_threshold=0.0,
                              check_every=check_every))
    data, _, _ = wl.data()
    model, _opt, trainer = wl.build()
    bad_steps = []
    for i, (xb, yb) in enumerate(data):
        state = copy.deepcopy(trainer.state_dict())
        for fail_on in (1, 2):
            calls = {"n": 0}

            class UserBug(Exception):
                pass

            def closure(xb=xb, yb=yb):
                calls["n"] += 1
                if calls["n"] == fail_on:
                    raise UserBug("mat1 and mat2 shapes cannot be multiplied")
                return F.cross_entropy(model(xb), yb)
            before = trainer.flat.flatten()
            phase = trainer.phase.value
            try:
                trainer.step(closure)
            except UserBug:
                if not torch.equal(trainer.flat.flatten(), before):
                    bad_steps.append((i, phase, fail_on))
            trainer.load_state_dict(copy.deepcopy(state))
        trainer.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))
    assert trainer.stats.predicted_steps > 0
    assert bad_steps == []


def test_closure_that_calls_backward_itself():
    """An LBFGS-style closure (zero_grad, backward, return loss) is a common port mistake."""
    model = make_model(0, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = quiet_trainer(model, opt)

    def lbfgs_style():
        opt.zero_grad()
        loss = F.cross_entropy(model(X), Y)
        loss.backward()
        return loss
    before = trainer.flat.flatten()
    with pytest.raises(LossError) as info:
        trainer.step(lbfgs_style)
    assert "backward" in one_line(info.value)
    assert torch.equal(trainer.flat.flatten(), before)


def test_step_after_a_fatal_error_says_why_and_a_load_revives_the_trainer(tmp_path):
    model = make_model(0, 16)
    trainer = quiet_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1))
    trainer.step(lambda: F.cross_entropy(model(X), Y))
    ck = save_atomic(trainer.state_dict(), tmp_path / "ck.pt")   # a file this trainer did
    good = trainer.flat.flatten()                                # not write: no restore point
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))          # no snapshot exists yet: nothing finite to restore
    with pytest.raises(TrainerStateError) as info:
        for _ in range(3):
            trainer.step(lambda: F.cross_entropy(model(X), Y))
    assert "NaN/Inf" in one_line(info.value) and "trainer.save()" in str(info.value)
    with pytest.raises(TrainerStateError) as info:
        trainer.step(lambda: F.cross_entropy(model(X), Y))
    msg = one_line(info.value)
    assert "fatal" in msg and "trainer.load(" in msg
    trainer.load(ck)
    assert torch.equal(trainer.flat.flatten(), good)
    trainer.step(lambda: F.cross_entropy(model(X), Y))
    assert trainer.flat.all_finite()
