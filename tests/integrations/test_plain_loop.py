"""``wrap``: the plain-loop adoption path, on real MNIST digits."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybrid_predict_trainer import ConfigError, HybridTrainer
from hybrid_predict_trainer.distributed import LocalCollective
from hybrid_predict_trainer.integrations import RunningStats, wrap

from _support import batches, make_mlp

EAGER = dict(monitor=False, auto_off=False, confidence_threshold=0.0, warmup_steps=5,
             full_steps=3, cost_model="fixed", segments=True)


def test_wrapped_loop_predicts_without_backward_and_counts_agree(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    stats = RunningStats()
    hybrid = wrap(model, optimizer, EAGER, hooks=[stats])
    assert isinstance(hybrid, HybridTrainer) and isinstance(hybrid.collective, LocalCollective)
    backward = {"n": 0}
    model[0].weight.register_hook(lambda g: backward.__setitem__("n", backward["n"] + 1))
    for x, y in batches(xtr, ytr, 2):
        before = backward["n"]
        result = hybrid.step(lambda: F.cross_entropy(model(x), y))
        assert (backward["n"] > before) == result.backward
    assert stats.predicted_steps > 0
    assert stats.backward_saved == stats.steps - backward["n"] == stats.predicted_steps
    assert stats.scalars()["backward_passes"] == backward["n"]
    assert stats.speedup_estimate > 0


def test_overrides_clipping_and_bad_input(mnist_small):
    xtr, ytr, _, _ = mnist_small
    model = make_mlp(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    hybrid = wrap(model, optimizer, {"monitor": False}, warmup_steps=7, clip_grad_norm=1e-3)
    assert hybrid.config.warmup_steps == 7
    before = [p.detach().clone() for p in model.parameters()]
    hybrid.step(lambda: F.cross_entropy(model(xtr[:64]), ytr[:64]))
    moved = torch.cat([(p.detach() - b).reshape(-1) for p, b in zip(model.parameters(), before)])
    assert moved.norm() <= 0.1 * 1e-3 * 1.001      # lr x clipped gradient norm
    with pytest.raises(ConfigError, match="warmup_stepz"):
        wrap(model, optimizer, warmup_stepz=3)
    with pytest.raises(ConfigError, match="clip_grad_norm"):
        wrap(model, optimizer, {"monitor": False}, clip_grad_norm=0.0)
    with pytest.raises(ConfigError, match="collective"):
        wrap(model, optimizer, {"monitor": False}, collective="nccl")
