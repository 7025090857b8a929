"""Edge cases a real training loop meets: bad loss components, parameters unfrozen mid-run,
mixed precision parameters, BatchNorm statistics, restores from checkpoints, a closed
trainer. Each one used to fail quietly or half-way through a step."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from hybrid_predict_trainer import (CheckpointError, ConfigError, HybridConfig, HybridTrainer,
                                    LossError, TrainerStateError)
from hybrid_predict_trainer.cli.task import as_task

from _support import make_mlp


def _regression(seed: int = 0, n: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    y = x @ torch.randn(10, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return [(x[i:i + 32], y[i:i + 32]) for i in range(0, n, 32)]


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("value, what", [(torch.ones(3), "shape (3,)"), ("x", "type str"),
                                         (None, "type NoneType"),
                                         (torch.tensor(1j), "shape ()")])
def test_a_bad_loss_component_is_refused_before_the_step(value, what):
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1)
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                            HybridConfig(monitor=False))
    data = _regression()
    for x, y in data[:3]:
        trainer.step(lambda: F.mse_loss(model(x), y))
    before = _weights(model)
    x, y = data[3]
    with pytest.raises(LossError, match=f"component 'a' has {re.escape(what)}"):
        trainer.step(lambda: (F.mse_loss(model(x), y), {"a": value}))
    assert _same(before, _weights(model))          # no backward, no optimizer step
    assert trainer.stats.backward_passes == trainer.stats.steps == 3
    # good components (tensors and numbers) still pass and are reported
    r = trainer.step(lambda: (F.mse_loss(model(x), y), {"a": torch.tensor(0.5), "b": 2}))
    assert r.components["a"] == 0.5 and r.components["b"] == 2.0


@pytest.mark.parametrize("change", ["unfreeze", "freeze", "add_param_group"])
def test_trainable_parameters_changed_mid_run_are_refused_before_anything_moves(change):
    model = make_mlp(0, hidden=16)
    extra = torch.nn.Parameter(torch.zeros(3))
    model.register_parameter("extra", extra)       # a head added later, say
    model[0].weight.requires_grad_(change != "unfreeze")
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if n != "extra"], lr=1e-2)
    trainer = HybridTrainer(model, opt, HybridConfig(monitor=False))
    x, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    for _ in range(7):
        trainer.step(lambda: F.cross_entropy(model(x), y))
    if change == "unfreeze":
        model[0].weight.requires_grad_(True)
    elif change == "freeze":
        model[0].weight.requires_grad_(False)
    else:
        opt.add_param_group({"params": [extra]})
    before = _weights(model)
    with pytest.raises(ConfigError, match="trainable parameters changed since HybridTrainer was "
                                          "built .*Build a new HybridTrainer"):
        trainer.step(lambda: F.cross_entropy(model(x), y))
    assert _same(before, _weights(model))
    # the documented way on: a new trainer over the same model and optimizer
    fresh = HybridTrainer(model, opt, HybridConfig(monitor=False))
    assert fresh.step(lambda: F.cross_entropy(model(x), y)).backward


class _MixedPrecision(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Linear(10, 32)
        self.head = torch.nn.Linear(32, 1).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(x)).double())


def test_float64_parameters_keep_their_precision_through_jumps():
    torch.manual_seed(0)
    model = _MixedPrecision()
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                            HybridConfig(monitor=False, jump_every=5, jump_check="guard"))
    assert trainer.flat.dtype == torch.float64
    data = _regression()
    for x, y in data[:5]:
        trainer.step(lambda: F.mse_loss(model(x), y.double()))
    # step 5 ended on the slow weights: a float32 buffer would have rounded the head
    assert trainer.jumps is not None and trainer.jumps.accepted + trainer._jump_pending >= 1
    head = model.head.weight.detach()
    assert not torch.equal(head, head.float().double())
    assert model.body.weight.dtype == torch.float32


def _bn_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.BatchNorm1d(32),
                               torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(32, 1))


@pytest.mark.parametrize("cfg", [
    dict(monitor=False),                                               # paired jumps
    dict(monitor=False, jump_trust=0),                                  # a check on every jump
    dict(monitor=False, segments=True, confidence_threshold=0.0, warmup_steps=5, full_steps=3,
         auto_off=False, cost_model="fixed"),                          # predicted segments too
])
def test_check_forwards_leave_batchnorm_statistics_alone(cfg):
    model = _bn_model()
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.05),
                            HybridConfig(**cfg))
    data = _regression(n=512)
    for _ in range(3):
        for x, y in data:
            trainer.step(lambda: F.mse_loss(model(x), y))
    s = trainer.stats
    assert s.forward_checks > 0                        # checks did run extra forwards
    # one update of the running statistics per real step: the graded forward it kept
    assert int(model[1].num_batches_tracked) == s.backward_passes + s.skipped_nonfinite


def test_a_nan_batch_leaves_the_batchnorm_statistics_as_they_were():
    # The step is dropped, and so must be what its forward did to the running statistics:
    # a NaN running mean would make every later evaluation NaN.
    model = _bn_model()
    trainer = HybridTrainer(model, torch.optim.Adam(model.parameters(), 1e-2),
                            HybridConfig(monitor=False))
    data = _regression(n=512)
    for x, y in data:
        trainer.step(lambda: F.mse_loss(model(x), y))
    before = [b.clone() for b in model.buffers()]
    x, y = data[0]
    bad = x.clone()
    bad[0, 0] = float("nan")
    r = trainer.step(lambda: F.mse_loss(model(bad), y))
    assert not r.backward and trainer.stats.skipped_nonfinite == 1
    assert _same(list(model.buffers()), before)
    model.eval()
    assert torch.isfinite(model(x)).all()


def test_a_rollback_restores_the_batchnorm_statistics_of_the_snapshot():
    # The statistics the rolled-back steps gathered belong to the weights that were undone;
    # after the rollback the step's one forward updates the snapshot's statistics instead.
    model = _bn_model()
    trainer = HybridTrainer(model, torch.optim.Adam(model.parameters(), 1e-2),
                            HybridConfig(monitor=False, jump_every=0))
    data = _regression(n=512)
    for i in range(30):
        x, y = data[i % len(data)]
        trainer.step(lambda: F.mse_loss(model(x), y))
    rollbacks = trainer.stats.rollbacks
    snap_w = trainer._snapshot.clone()
    snap_b = [b.clone() for b in trainer._snapshot_buffers]
    assert not _same(list(model.buffers()), snap_b)   # the statistics moved since the snapshot
    x, y = data[0]
    with torch.no_grad():
        model[4].weight.mul_(1e3)          # weights gone bad: the loss blows up
    r = trainer.step(lambda: F.mse_loss(model(x), y))
    assert r.rolled_back and trainer.stats.rollbacks == rollbacks + 1
    # expected: the snapshot's weights and statistics, then one training-mode forward of x
    ref = _bn_model()
    torch.nn.utils.vector_to_parameters(snap_w, ref.parameters())
    for b, v in zip(ref.buffers(), snap_b):
        b.copy_(v)
    ref.train()
    with torch.no_grad():
        ref(x)
    assert all(torch.allclose(a, b) for a, b in zip(model.buffers(), ref.buffers()))


def test_a_restore_from_a_checkpoint_keeps_the_run_record_monotone(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    trainer = HybridTrainer(model, torch.optim.Adam(model.parameters(), 1e-2),
                            HybridConfig(monitor=False))
    data = _regression(n=512)
    steps = []
    for i in range(60):
        x, y = data[i % len(data)]
        if i == 25:
            trainer.save(tmp_path / "c25.pt")
        if i == 45:
            with torch.no_grad():
                model[0].weight[0, 0] = float("inf")     # changed outside the trainer
        steps.append(trainer.step(lambda: F.mse_loss(model(x), y)).step)
    assert trainer.stats.rollbacks >= 1 and trainer.flat.all_finite()
    assert any("restored checkpoint" in t.reason for t in trainer.transitions)
    assert steps == sorted(set(steps)) and len(steps) == 60     # step numbers never repeat
    assert trainer.stats.steps == 60 and trainer.stats.skipped_nonfinite >= 1


def test_close_is_idempotent_and_a_closed_trainer_takes_no_step(tmp_path):
    model = torch.nn.Linear(10, 1)
    x, y = _regression()[0]
    with HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                       HybridConfig(monitor=False, metrics_path=str(tmp_path / "m.jsonl"))) as t:
        for _ in range(3):
            t.step(lambda: F.mse_loss(model(x), y))
    t.close()                                           # a second close is harmless
    before = _weights(model)
    with pytest.raises(TrainerStateError, match="closed"):
        t.step(lambda: F.mse_loss(model(x), y))
    assert _same(before, _weights(model))
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert sum('"type": "summary"' in line for line in lines) == 1


def test_a_scheduler_that_needs_a_metric_is_refused_when_the_task_is_built():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    task = {"model": model, "optimizer": opt, "loss": lambda m, b: m(b).pow(2).mean(),
            "train": [torch.ones(2, 2)],
            "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt)}
    with pytest.raises(ConfigError, match="ReduceLROnPlateau, whose step\\(\\) needs a metric"):
        as_task(task, "build")
    task["scheduler"] = torch.optim.lr_scheduler.StepLR(opt, 10)
    assert as_task(task, "build").scheduler is task["scheduler"]


def test_a_checkpoint_from_another_optimizer_or_predictor_says_which(tmp_path):
    model = torch.nn.Linear(10, 1)
    x, y = _regression()[0]
    sgd = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                        HybridConfig(monitor=False))
    sgd.step(lambda: F.mse_loss(model(x), y))
    path = sgd.save(tmp_path / "sgd.pt")
    adam = HybridTrainer(model, torch.optim.Adam(model.parameters()), HybridConfig(monitor=False))
    with pytest.raises(CheckpointError, match="written with optimizer SGD, this trainer uses "
                                              "Adam"):
        adam.load(path)
    rssm = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.1),
                         HybridConfig(monitor=False, predictor="rssm", segments=True))
    with pytest.raises(CheckpointError, match="predictor 'continuation', this trainer uses "
                                              "'rssm'; set predictor='continuation'"):
        rssm.load(path)


def test_the_snapshot_statistics_travel_with_a_checkpoint_and_are_shape_checked(tmp_path):
    model = _bn_model()
    trainer = HybridTrainer(model, torch.optim.Adam(model.parameters(), 1e-2),
                            HybridConfig(monitor=False))
    data = _regression(n=512)
    for i in range(25):
        x, y = data[i % len(data)]
        trainer.step(lambda: F.mse_loss(model(x), y))
    path = trainer.save(tmp_path / "c.pt")
    other = _bn_model(seed=1)
    resumed = HybridTrainer(other, torch.optim.Adam(other.parameters(), 1e-2),
                            HybridConfig(monitor=False))
    resumed.load(path)
    assert _same(resumed._snapshot_buffers, trainer._snapshot_buffers)
    state = trainer.state_dict()
    state["trainer"]["snapshot_buffers"][0] = torch.zeros(5)
    with pytest.raises(CheckpointError, match="snapshot's buffers"):
        resumed.load_state_dict(state)
    assert _same(resumed._snapshot_buffers, trainer._snapshot_buffers)   # all or nothing


def test_the_end_of_warm_up_takes_its_restore_point_once_and_of_the_current_weights():
    # The first restore point is the weights the last warm-up step left; it used to be copied
    # twice in that step (the second time after a finiteness check of every parameter).
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    trainer = HybridTrainer(model, torch.optim.Adam(model.parameters(), 1e-2),
                            HybridConfig(monitor=False, warmup_steps=5, jump_every=0))
    data = _regression(n=512)
    taken = []
    take = trainer._take_snapshot
    trainer._take_snapshot = lambda: (taken.append(trainer.stats.steps), take())[1]
    for i in range(5):
        x, y = data[i]
        trainer.step(lambda: F.mse_loss(model(x), y))
    assert trainer.phase.value == "full"
    assert taken == [4]      # once, during the fifth step (stats.steps counts it afterwards)
    assert torch.equal(trainer._snapshot, torch.nn.utils.parameters_to_vector(model.parameters()))


def _embedding_task(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8, sparse=True), torch.nn.Flatten(),
                                torch.nn.Linear(32, 1))
    x = torch.randint(0, 50, (64, 4), generator=torch.Generator().manual_seed(seed))
    y = torch.randn(64, 1, generator=torch.Generator().manual_seed(seed + 1))
    return model, x, y


@pytest.mark.parametrize("monitor", [False, True])
def test_sparse_embedding_gradients_train_through_every_check(monitor):
    # the gradient-norm check, the jumps, predicted segments and the monitor all read a
    # sparse gradient (or the updates it made)
    model, x, y = _embedding_task()
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.05),
                            HybridConfig(monitor=monitor, segments=True, warmup_steps=5,
                                         full_steps=5))
    losses = [trainer.step(lambda: F.mse_loss(model(x), y)).loss for _ in range(40)]
    assert trainer.stats.steps == 40 and trainer.stats.skipped_nonfinite == 0
    assert trainer.stats.predicted_steps > 0
    assert trainer.summary()["jumps"]["accepted"] + trainer.summary()["jumps"]["rejected"] > 0
    assert losses[-1] < 0.5 * losses[0]
    assert trainer.flat.all_finite()


def test_a_nan_in_a_sparse_gradient_is_skipped_and_named():
    model, x, y = _embedding_task()
    poison = {"on": False}

    def hook(grad: torch.Tensor) -> torch.Tensor:
        if not poison["on"]:
            return grad
        g = grad.coalesce()
        values = g.values().clone()
        values[0, 0] = float("nan")
        return torch.sparse_coo_tensor(g.indices(), values, g.shape, check_invariants=True)

    model[0].weight.register_hook(hook)
    trainer = HybridTrainer(model, torch.optim.SGD(model.parameters(), lr=0.05),
                            HybridConfig(monitor=False))
    for i in range(10):
        poison["on"] = i == 6
        r = trainer.step(lambda: F.mse_loss(model(x), y))
        assert r.backward == (i != 6)
    assert trainer.stats.skipped_nonfinite == 1 and trainer.flat.all_finite()
    said = [s.message for _, s in trainer.signals if s.name == "non-finite"]
    assert said and "'0.weight'" in said[0], said


def _scaled_gradients(lr: float, **cfg):
    """A small net whose gradients are multiplied by ``factor["x"]`` (NaN, 1e4, ...)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    factor = {"x": 1.0}
    for p in model.parameters():
        p.register_hook(lambda g: g * factor["x"])
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=lr),
                            HybridConfig(monitor=False, **cfg))
    return model, factor, trainer


def test_a_nan_gradient_between_sampled_norms_is_still_skipped():
    # after the warm-up, with segments off, the norm is taken every grad_norm_every steps;
    # the steps between check finiteness with the fused pass
    model, factor, trainer = _scaled_gradients(1e-2, warmup_steps=4, grad_norm_every=4)
    data = _regression()
    skipped = []
    for i in range(12):
        x, y = data[i % len(data)]
        factor["x"] = float("nan") if i in (5, 6, 7, 8) else 1.0   # every phase of the cycle
        r = trainer.step(lambda: F.mse_loss(model(x), y))
        if not r.backward:
            skipped.append(i)
    assert skipped == [5, 6, 7, 8]
    assert trainer.flat.all_finite()
    assert all(torch.isfinite(v).all() for st in trainer.optimizer.state.values()
               for v in st.values() if torch.is_tensor(v))


@pytest.mark.parametrize("every, within", [(1, 1), (4, 4)])
def test_exploding_gradients_are_named_within_grad_norm_every_steps(every, within):
    model, factor, trainer = _scaled_gradients(1e-3, warmup_steps=6, grad_norm_every=every)
    data = _regression()
    first = None
    for i in range(20):
        x, y = data[i % len(data)]
        factor["x"] = 1e4 if i >= 9 else 1.0
        trainer.step(lambda: F.mse_loss(model(x), y))
        if first is None and any(s.name == "exploding-gradients" for _, s in trainer.signals):
            first = i
    assert first is not None and 9 <= first < 9 + within
