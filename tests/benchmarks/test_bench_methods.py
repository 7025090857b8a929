"""The peer methods do exactly what their docstrings say, on a tiny model."""
from __future__ import annotations

import torch
from torch import nn

from benchmarks.methods import (METHODS, AdamWRunner, LinearExtrapolationRunner,
                                LookaheadRunner, SelectiveBackpropRunner)
from benchmarks.workloads import Data, Workload, epoch_batches


def _workload() -> tuple[Workload, Data]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=gen)
    y = (x[:, :1] * 2.0 - x[:, 1:2]).contiguous()
    data = Data(x, y, x[:16], y[:16])
    wl = Workload(name="toy", description="toy", default_lr=0.05, steps=20, eval_every=5,
                  batch_size=12, load=lambda: data,
                  build_model=lambda d: nn.Linear(5, 1),
                  per_sample_loss=lambda out, t: ((out - t) ** 2).mean(dim=1),
                  batches=lambda d, seed: epoch_batches(d, seed, 12))
    return wl, data


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def test_same_seed_same_init_and_batches() -> None:
    wl, data = _workload()
    assert torch.equal(_flat(wl.model(data, 3)), _flat(wl.model(data, 3)))
    assert not torch.equal(_flat(wl.model(data, 3)), _flat(wl.model(data, 4)))
    a, b = wl.batches(data, 7), wl.batches(data, 7)
    for _ in range(10):  # crosses an epoch boundary (5 batches per epoch)
        assert torch.equal(next(a)[0], next(b)[0])


def test_lookahead_interpolates_every_k_steps() -> None:
    wl, data = _workload()
    la_model, ref_model = wl.model(data, 0), wl.model(data, 0)
    start = _flat(la_model)
    la = LookaheadRunner(wl, la_model, 0.05, 0)
    ref = AdamWRunner(wl, ref_model, 0.05, 0)
    batches = list(zip(range(5), wl.batches(data, 1)))
    for _, (x, y) in batches:
        la.step(x, y)
        ref.step(x, y)
    # After k=5 inner steps: theta = phi = start + 0.5 * (fast - start).
    expected = start + 0.5 * (_flat(ref_model) - start)
    assert torch.allclose(_flat(la_model), expected, atol=1e-6)
    assert la.stats()["synchronisations"] == 1


def test_linear_extrapolation_jumps_half_the_window() -> None:
    wl, data = _workload()
    model, ref_model = wl.model(data, 0), wl.model(data, 0)
    start = _flat(model)
    runner = LinearExtrapolationRunner(wl, model, 0.05, 0)
    ref = AdamWRunner(wl, ref_model, 0.05, 0)
    for _, (x, y) in zip(range(10), wl.batches(data, 1)):
        runner.step(x, y)
        ref.step(x, y)
    fast = _flat(ref_model)
    assert torch.allclose(_flat(model), fast + 0.5 * (fast - start), atol=1e-6)


def test_selective_backprop_uses_the_highest_loss_third() -> None:
    wl, data = _workload()
    model = wl.model(data, 0)
    runner = SelectiveBackpropRunner(wl, model, 0.05, 0)
    x, y = data.x_train[:12], data.y_train[:12]
    with torch.no_grad():
        losses = wl.per_sample_loss(model(x), y)
    top = torch.topk(losses, 4).indices
    # The same step taken by hand on the top-4 examples only.
    manual = wl.model(data, 0)
    opt = torch.optim.AdamW(manual.parameters(), lr=0.05)
    wl.loss(manual(x[top]), y[top]).backward()
    opt.step()
    runner.step(x, y)
    assert torch.allclose(_flat(model), _flat(manual), atol=1e-6)
    assert runner.stats()["backprop_fraction"] == 4 / 12


def test_every_method_trains_the_toy_problem() -> None:
    wl, data = _workload()
    for name, method in METHODS.items():
        if method.hybrid:
            continue
        model = wl.model(data, 0)
        before = wl.evaluate(model, data)
        runner = method.make(wl, model, 0.05, 0)
        for _, (x, y) in zip(range(40), wl.batches(data, 0)):
            rec = runner.step(x, y)
            assert rec.backward and not rec.predicted
        assert wl.evaluate(model, data) < 0.5 * before, name


def test_the_default_method_runs_the_library_defaults() -> None:
    """The goals are judged on DEFAULT_METHOD, so it must be what HybridConfig() gives."""
    from benchmarks.methods import DEFAULT_METHOD
    from hybrid_predict_trainer import HybridConfig

    wl, data = _workload()
    runner = METHODS[DEFAULT_METHOD].make(wl, wl.model(data, 0), 0.05, 0)
    used = runner.trainer.config.model_dump()
    defaults = HybridConfig().model_dump()
    differ = {k for k in defaults if used[k] != defaults[k]}
    assert differ <= {"monitor", "seed"}, differ   # the monitor is benchmarked on its own


def test_the_ablations_change_only_their_setting_and_run_only_when_named() -> None:
    from benchmarks.methods import DEFAULT_METHOD, default_methods

    wl, data = _workload()
    base = METHODS[DEFAULT_METHOD].make(wl, wl.model(data, 0), 0.05, 0).trainer.config
    extras = [name for name, m in METHODS.items() if m.extra]
    assert extras and not set(extras) & set(default_methods())
    assert DEFAULT_METHOD in default_methods() and "lookahead" in default_methods()
    for name in extras:
        cfg = METHODS[name].make(wl, wl.model(data, 0), 0.05, 0).trainer.config
        differ = {k for k, v in base.model_dump().items() if cfg.model_dump()[k] != v}
        if name == "hybrid-alpha-adapt":
            assert differ == {"jump_alpha_step"} and cfg.jump_alpha_step > 0
        elif name == "hybrid-not-told-full-batch":
            assert differ == set()   # it differs only on a full-batch workload (below)
        elif name.startswith("hybrid-period-"):
            assert differ == {"jump_every"} and name == f"hybrid-period-{cfg.jump_every}"
        elif name == "hybrid-slow-from-start":
            assert differ == {"jump_slow_start"} and cfg.jump_slow_start == "start"
        elif name == "hybrid-early-segments":
            assert differ == {"segments", "warmup_steps", "full_steps"} and cfg.segments
            assert cfg.warmup_steps + cfg.full_steps < base.warmup_steps + base.full_steps
        else:
            assert differ == {"jump_alpha", "jump_alpha_calm"} and cfg.jump_alpha_calm == 0
            assert str(cfg.jump_alpha) in name


def test_every_method_gets_its_own_colour_in_the_plots():
    from benchmarks.methods import METHODS
    from benchmarks.plots import _colors
    colours = _colors(list(METHODS))
    assert len(set(colours.values())) == len(METHODS)


def test_jump_probe_reports_every_jump_along_lookaheads_trajectory() -> None:
    from benchmarks.jump_probe import rises

    out = rises("tabular-fullbatch", 0.016, seed=0)
    # a jump ends every 5th step; the next one (StepResult.step counts from 0) checks it
    assert [step for step, _ in out] == [5, 10, 15, 20, 25, 30, 35]
    assert all(-1.0 < r < 1.0 for _, r in out)
    assert out[0][1] > 0.05       # the first jump raises the next batch's loss (README)


def test_on_a_full_batch_workload_the_hybrid_rows_are_told_so_where_they_read_it() -> None:
    import dataclasses

    from benchmarks.methods import DEFAULT_METHOD
    from hybrid_predict_trainer import HybridConfig

    wl, data = _workload()
    full = dataclasses.replace(wl, full_batch=True)

    def config(name: str, workload: Workload) -> HybridConfig:
        return METHODS[name].make(workload, workload.model(data, 0), 0.05, 0).trainer.config

    told = config(DEFAULT_METHOD, full)
    assert told.full_batch and not config(DEFAULT_METHOD, wl).full_batch
    assert told == config(DEFAULT_METHOD, wl).model_copy(update={"full_batch": True})
    assert not config("hybrid-not-told-full-batch", full).full_batch
    assert not config("hybrid-guard", full).full_batch      # a guard check would not read it
    assert config("hybrid-continuation", full).full_batch   # predicted segments read it
    for name in ("hybrid-jumps", "hybrid-guard", "hybrid-continuation"):
        assert config(name, full).inert_settings() == {}


def test_hybrid_runner_records_say_what_each_step_did() -> None:
    # the record is looked up, not built: each one must still be the step's own outcome
    wl, data = _workload()
    model = wl.model(data, 0)
    runner = METHODS["hybrid-jumps"].make(wl, model, wl.default_lr, 0)
    seen = []
    real_step = runner.trainer.step

    def spy(closure):
        seen.append(real_step(closure))
        return seen[-1]

    runner.trainer.step = spy
    batches = wl.batches(data, 0)
    records = [runner.step(*next(batches)) for _ in range(30)]
    for rec, res in zip(records, seen):
        assert (rec.phase, rec.backward, rec.predicted, rec.rolled_back, rec.jumped) == (
            res.phase.value, res.backward, res.predicted, res.rolled_back, res.jumped)
    assert {r.jumped for r in records} - {None}    # some steps checked a jump
    same = [r for r in records if r.jumped is None and r.phase == "full"]
    assert len(same) > 1 and all(r is same[0] for r in same)
