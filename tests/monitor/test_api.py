"""The monitor's public API: findings, policies, options, hooks, reports."""
from __future__ import annotations

import gc
import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hybrid_predict_trainer.errors import ConfigError, HealthError, LossError
from hybrid_predict_trainer.monitor import (CODES, Check, Finding, HealthMonitor, HealthWarning,
                                            MonitorConfig, watch)
from hybrid_predict_trainer.monitor.checks import patching


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def _train(mon: HealthMonitor, model: nn.Module, opt: torch.optim.Optimizer, steps: int,
           squeeze: bool = False) -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
        out = model(x)
        if squeeze:
            out = out.squeeze(-1)
        loss = F.mse_loss(out, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        mon.step(loss, outputs=out, targets=y)


def test_finding_reads_like_an_explanation_and_serialises() -> None:
    f = Finding("loss-broadcast", "error", 3, "mse_loss at train.py:7", "input (8,) vs target "
                "(8, 1) -> (8, 8)", "identical shapes", "the loss broadcast.", "match shapes.")
    text = str(f)
    for part in ("Step 3", "mse_loss at train.py:7", "(8, 1)", "identical shapes",
                 "match shapes.", "loss-broadcast"):
        assert part in text
    assert json.loads(json.dumps(f.to_dict()))["observed"] == f.observed
    with pytest.raises(AttributeError):
        f.step = 4  # type: ignore[misc]


def test_every_code_has_a_severity_and_title() -> None:
    assert len(CODES) == 14
    for info in CODES.values():
        assert info.severity in ("info", "warning", "error") and info.title


def test_warn_policy_emits_health_warning_once_per_place() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with watch(model, opt) as mon:
            _train(mon, model, opt, 5, squeeze=True)
    health = [w for w in caught if issubclass(w.category, HealthWarning)]
    assert len(health) == 1
    assert "loss-broadcast" in str(health[0].message)
    assert health[0].filename == __file__          # points at the user's line
    (finding,) = mon.findings
    assert finding.count == 5 and finding.step == 1
    # PyTorch's own size warning is folded into the finding, not repeated.
    assert not any("target size" in str(w.message) for w in caught)


def test_raise_policy_raises_at_the_first_loss_call() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with watch(model, opt, policy="raise") as mon:
        out = model(torch.randn(16, 4)).squeeze(-1)
        with pytest.raises(HealthError) as info:
            F.mse_loss(out, torch.randn(16, 1))
    assert info.value.finding.code == "loss-broadcast"
    assert mon.steps == 0


def test_stop_policy_sets_should_stop_without_raising() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with watch(model, opt, policy="stop") as mon:
        assert mon.should_stop is False
        _train(mon, model, opt, 2, squeeze=True)
    assert mon.should_stop is True
    assert mon.findings[0].code == "loss-broadcast"


def test_unknown_option_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        watch(_model(), grad_evry=5)
    msg = str(info.value)
    assert "grad_evry" in msg and "did you mean 'grad_every'" in msg
    assert "allow_broadcast" in msg and "\n" not in msg


@pytest.mark.parametrize("options, field", [({"policy": "loud"}, "policy"),
                                            ({"grad_every": 0}, "grad_every"),
                                            ({"disable": ["nope"]}, "disable"),
                                            ({"watch_layers": ["missing"]}, "watch_layers")])
def test_bad_option_values_are_config_errors(options: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        watch(_model(), **options)


def test_unknown_layer_name_error_lists_real_names() -> None:
    with pytest.raises(ConfigError, match="valid names include: 0, 1, 2"):
        watch(_model(), watch_layers=["3"])


def test_config_is_frozen_and_documented() -> None:
    cfg = MonitorConfig.from_options()
    assert cfg.policy == "warn" and cfg.watch_layers is None
    assert all(f.description for f in MonitorConfig.model_fields.values())


def test_close_removes_every_hook_and_patch() -> None:
    gc.collect()                          # monitors other tests dropped without close()
    others = patching.listener_count()    # monitors of other tests that are still alive
    original = getattr(F.mse_loss, "__hpt_original__", F.mse_loss)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    mon = watch(model, opt, watch_layers=["1"], rank_every=2, graph_every=1)
    assert F.mse_loss is not original and patching.is_patched()
    assert patching.listener_count() == others + 1
    _train(mon, model, opt, 3)
    assert any(p._backward_hooks for p in model.parameters())       # the gradient probe
    assert opt._optimizer_step_pre_hooks and opt._optimizer_step_post_hooks
    mon.close()
    assert patching.listener_count() == others
    if others == 0:
        assert F.mse_loss is original and not patching.is_patched()
    assert not any(p._backward_hooks for p in model.parameters())
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(not getattr(c, "_handles", None) for c in mon.checks)
    mon.close()  # idempotent


def test_context_manager_closes_on_error_and_keeps_findings() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    gc.collect()
    others = patching.listener_count()
    with pytest.raises(RuntimeError, match="boom"):
        with watch(model, opt, policy="stop") as mon:
            _train(mon, model, opt, 1, squeeze=True)
            raise RuntimeError("boom")
    assert patching.listener_count() == others
    assert mon.findings and mon.findings[0].code == "loss-broadcast"


def test_two_monitors_share_the_patch_until_both_close() -> None:
    gc.collect()
    others = patching.listener_count()
    a, b = watch(_model()), watch(_model())
    assert patching.listener_count() == others + 2
    a.close()
    assert patching.is_patched()
    b.close()
    assert patching.listener_count() == others
    assert patching.is_patched() == (others > 0)


def test_a_monitor_dropped_without_close_unpatches_when_collected() -> None:
    gc.collect()
    others = patching.listener_count()
    mon = watch(_model())
    assert patching.is_patched()
    del mon
    gc.collect()
    assert patching.listener_count() == others
    assert patching.is_patched() == (others > 0)


def test_only_the_current_monitor_hears_a_loss_call() -> None:
    stale = watch(_model(), policy="stop")               # an earlier run, never closed
    with watch(_model(), policy="stop", allow_broadcast=True) as current:
        F.mse_loss(torch.zeros(4), torch.zeros(4, 1))     # intended in the current run
        current.step(torch.tensor(0.0), backward=False)
    assert stale.findings == [] and current.findings == []
    stale.step(torch.tensor(0.0), backward=False)         # stepping makes it current again
    F.mse_loss(torch.zeros(4), torch.zeros(4, 1))
    stale.close()
    assert [f.code for f in stale.findings] == ["loss-broadcast"]


def test_report_and_summary_when_clean() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with watch(model, opt) as mon:
        _train(mon, model, opt, 12)
    assert mon.report() == "Training health: no problems found in 12 steps."
    summary = mon.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["clean"] and summary["steps"] == 12 and summary["optimizer_steps"] == 12
    assert summary["checks"]["gradients"]["runs"] == 0   # warm-up reads are not comparisons
    assert summary["monitor_seconds"] > 0


def test_report_groups_findings_with_numbers() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with watch(model, opt, policy="stop", watch_layers=["1"]) as mon:
        _train(mon, model, opt, 3, squeeze=True)
    text = mon.report()
    assert text.startswith("Training health: 1 findings in 3 steps (1 error).")
    assert "ERROR loss-broadcast (step 1" in text and "seen 3 times" in text
    assert "observed: input (16,) vs target (16, 1) -> (16, 16)" in text
    assert "Configured checks that never ran:" in text and "rank-collapse on '1'" in text
    assert mon.summary()["counts"] == {"info": 0, "warning": 0, "error": 1}


def test_non_scalar_loss_is_refused() -> None:
    with watch(_model()) as mon:
        with pytest.raises(LossError, match="scalar"):
            mon.step(torch.ones(3))


def test_disable_switches_a_check_off() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with watch(model, opt, disable=["loss-broadcast"]) as mon:
        with pytest.warns(UserWarning, match="target size") as caught:   # PyTorch's own
            _train(mon, model, opt, 3, squeeze=True)
    assert mon.findings == []
    assert all(w.filename == __file__ for w in caught)   # at the user's line, not ours


def test_allow_broadcast_is_the_documented_opt_out() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with watch(model, opt, allow_broadcast=True) as mon:
            _train(mon, model, opt, 3, squeeze=True)
    assert mon.findings == []


def test_custom_check_plugs_in() -> None:
    class LossAbove(Check):
        name = "loss-above"
        codes = ("loss-above",)

        def on_step(self, ctx):  # type: ignore[no-untyped-def]
            if ctx.loss_value > 0.5:
                self.monitor.emit("loss-above", "loss", f"loss {ctx.loss_value:.2f}",
                                  "below 0.5", "the loss is high.", "train longer.",
                                  severity="info")

    with watch(_model()) as mon:
        mon.add_check(LossAbove())
        mon.step(torch.tensor(0.9), backward=False)
        mon.step(torch.tensor(0.1), backward=False)
        mon.step(torch.tensor(0.8), backward=False)
    (f,) = mon.findings
    assert (f.code, f.severity, f.step, f.count) == ("loss-above", "info", 1, 2)
    assert mon.summary()["clean"]       # info findings do not count as problems


def test_track_reads_statistics_and_flags_non_finite() -> None:
    values = iter([1.0, float("nan")])
    with watch(_model(), policy="stop") as mon:
        mon.track("ratio", lambda: next(values))
        mon.step(torch.tensor(1.0), backward=False)
        assert mon.findings == []
        mon.step(torch.tensor(1.0), backward=False)
    (f,) = mon.findings
    assert (f.code, f.where) == ("non-finite", "statistic 'ratio'")


def test_gate_observe_registers_and_names_the_component_holding_it_back() -> None:
    weights = {"agreement": 0.5, "accuracy": 0.3, "stability": 0.2}
    with watch(_model(), policy="stop", unreachable_after=5) as mon:
        for i in range(6):
            parts = {"agreement": 0.5 * 0.35, "accuracy": 0.3 * 0.5, "stability": 0.2 * 0.5}
            mon.gate_observe("predict", sum(parts.values()) + 0.001 * i, parts,
                             threshold=0.9, weights=weights)
            mon.step(torch.tensor(1.0), backward=False)
    (f,) = mon.findings
    assert f.code == "unreachable-threshold" and f.step == 5
    assert "'agreement' held it back most" in f.message
    assert "0.175 of a possible 0.5" in f.message
    assert "below the threshold 0.9" in f.observed


def test_gate_that_opens_once_is_not_reported() -> None:
    scores = iter([0.2, 0.95] + [0.2] * 10)
    with watch(_model(), policy="stop", unreachable_after=3) as mon:
        mon.gate("g", lambda: next(scores), 0.9)
        for _ in range(12):
            mon.step(torch.tensor(1.0), backward=False)
    assert mon.findings == []


def test_gate_observe_needs_a_threshold_for_a_new_gate() -> None:
    with watch(_model()) as mon:
        with pytest.raises(ConfigError, match="threshold"):
            mon.gate_observe("new", 0.5)


def test_predicted_steps_skip_gradient_checks() -> None:
    """backward=False and optimizer steps without a backward read no gradients."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), 0.01)
    with watch(model, opt, warmup_steps=1, grad_every=1) as mon:
        _train(mon, model, opt, 2)
        for _ in range(5):              # an update applied without any backward
            with torch.no_grad():
                loss = model(torch.randn(16, 4)).pow(2).mean()
            opt.step()
            mon.step(loss, backward=False)
    (grads,) = [c for c in mon.checks if c.name == "gradients"]
    assert grads.runs == 1      # only the second real step is compared
    assert mon.findings == []


def test_a_loss_passed_as_a_number_says_the_graph_check_never_ran() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    with watch(model, opt) as mon:
        for _ in range(4):
            x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
            loss = F.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss.item())           # the graph is gone: nothing to walk
    (line,) = mon.summary()["not_run"]
    assert line.startswith("graph-across-steps: the loss given to step() had no autograd "
                           "graph on the 2 sampled steps")
    assert "Configured checks that never ran" in mon.report()
    with watch(model, opt) as mon:          # the tensor itself: the check runs
        _train(mon, model, opt, 4)
    assert mon.summary()["not_run"] == [] and mon.summary()["checks"]["graph"]["runs"] == 2


def test_a_second_open_monitor_on_one_model_is_named() -> None:
    model = _model()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    first = watch(model, opt)
    with pytest.warns(HealthWarning, match="already has an open health monitor"):
        second = watch(model, opt)
    second.close()
    first.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        watch(model, opt).close()           # the others are closed: nothing to say
