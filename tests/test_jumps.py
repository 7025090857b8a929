"""Checked jumps onto slow weights: the Lookahead rule, the paired check folded into a real
step, the undo on rejection, the off-switch and the checkpoint round trip."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hybrid_predict_trainer import HybridConfig, HybridTrainer, HybridWarning
from hybrid_predict_trainer.predictors.slow_weights import SlowWeights
from hybrid_predict_trainer.report import run_text_report

# no predicted segments (the gate never opens), so every step is a real one
NO_SEGMENTS = dict(monitor=False, warmup_steps=5)   # segments are off by default


def _problem(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(64, 1, generator=g)
    torch.manual_seed(seed)
    return torch.nn.Linear(8, 1), x, y


def _least_squares(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact optimum of the linear problem, as a flat (weight, bias) vector."""
    return torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1)], 1), y).solution.flatten()


def test_slow_weights_follow_the_lookahead_rule():
    sw = SlowWeights(every=3, alpha=0.5)
    assert not sw.due()
    sw.start(torch.zeros(4))
    for _ in range(2):
        sw.tick()
    assert not sw.due()
    sw.tick()
    assert sw.due()
    target = sw.propose(torch.full((4,), 2.0))
    assert torch.equal(target, torch.ones(4))       # slow + 0.5 * (w - slow)
    assert not sw.due()                              # the cadence restarts at a jump
    target = sw.propose(torch.full((4,), 3.0))
    assert torch.equal(target, torch.full((4,), 2.0))


def test_slow_weights_off_switch_and_state_round_trip():
    sw = SlowWeights(every=2, alpha=0.5, window=4, min_accept=2)
    sw.start(torch.arange(3.0))
    assert [sw.record(ok, 0.1) for ok in (True, False, False)] == [False, False, False]
    assert sw.record(False, 0.0)                     # 1 of the last 4 accepted: < 2
    assert sw.summary()["accepted"] == 1 and sw.summary()["rejected"] == 3
    copy = SlowWeights(every=2, alpha=0.5, window=4, min_accept=2)
    copy.load_state_dict(sw.state_dict())
    assert torch.equal(copy.slow, sw.slow) and copy.slow is not sw.slow
    assert list(copy.outcomes) == list(sw.outcomes) and copy.summary() == sw.summary()
    sw.reset_window()
    assert not sw.record(False, 0.0)


def _check_pattern(sw: SlowWeights, trust: int, outcomes: list[bool], max_gap: int = 1) -> str:
    """Which check each jump gets ('P' paired, 'G' guard) when they end as ``outcomes``."""
    kinds = ""
    for ok in outcomes:
        paired = sw.paired_due(trust, max_gap)
        kinds += "P" if paired else "G"
        sw.record(ok, 0.01 if paired and ok else None)
    return kinds


def test_trusted_jumps_thin_the_paired_checks_and_a_rejection_restores_them():
    sw = SlowWeights(every=5, alpha=0.5, window=100)
    # three kept paired checks earn trust: then one paired check in every three jumps
    assert _check_pattern(sw, 3, [True] * 9) == "PPPGGPGGP"
    # a guard that catches a blow-up: every jump paired again until trust is re-earned
    assert _check_pattern(sw, 3, [False, True, True, True, True]) == "GPPPG"
    # a rejected paired check does the same
    sw2 = SlowWeights(every=5, alpha=0.5, window=100)
    assert _check_pattern(sw2, 2, [True, True, True, False, True, True, True]) == "PPGPPPG"
    assert _check_pattern(SlowWeights(every=5, alpha=0.5), 0, [True] * 5) == "PPPPP"
    copy = SlowWeights(every=5, alpha=0.5, window=100)
    copy.load_state_dict(sw.state_dict())
    assert (copy.streak, copy.unpaired) == (sw.streak, sw.unpaired) == (3, 1)
    sw.reset_window()                                 # jumps paused and retried: earn it again
    assert _check_pattern(sw, 2, [True] * 3) == "PPG"


def test_the_gap_between_paired_checks_doubles_while_they_keep_their_jumps():
    sw = SlowWeights(every=5, alpha=0.5, window=100)
    # trust 2: one guarded jump after the second kept check, then 2, then 4 (the cap)
    assert _check_pattern(sw, 2, [True] * 16, max_gap=4) == "PPGPGGPGGGGPGGGG"
    # a rejection (here by a guard) starts over: every jump paired until trust is re-earned
    assert _check_pattern(sw, 2, [True, False, True, True, True, True], max_gap=4) == "PGPPGP"
    # trust 3 doubles from two guarded jumps; a cap below trust - 1 does not shrink the gap
    assert _check_pattern(SlowWeights(every=5, alpha=0.5), 3, [True] * 12, max_gap=100) == \
        "PPPGGPGGGGPG"
    assert _check_pattern(SlowWeights(every=5, alpha=0.5), 3, [True] * 9, max_gap=1) == \
        "PPPGGPGGP"


def test_trusted_jumps_skip_the_forward_of_the_guarded_checks():
    counts = {}
    for trust, gap in ((0, 1), (2, 1), (2, 8)):
        model, x, y = _problem(7)
        # lr 0: every jump is a no-op, kept
        trainer = _trainer(model, jump_trust=trust, jump_trust_max_gap=gap)
        loss = lambda: F.mse_loss(model(x), y)       # noqa: E731
        results = [trainer.step(loss) for _ in range(17)]   # jumps end steps 2, 4, ..., 16
        assert [r.jumped for r in results if r.jumped is not None] == [True] * 8
        counts[trust, gap] = trainer.stats.forward_checks
        assert trainer.summary()["jumps"]["accepted"] == 8
    assert counts[0, 1] == 8
    assert counts[2, 1] == 5                          # P P G P G P G P
    assert counts[2, 8] == 4                          # P P G P G G P G


@pytest.mark.parametrize("kwargs", [dict(every=0, alpha=0.5), dict(every=5, alpha=0.0),
                                    dict(every=5, alpha=0.5, window=3, min_accept=4),
                                    dict(every=5, alpha=0.5, calm_alpha=0.4),
                                    dict(every=5, alpha=0.5, calm_alpha=0.65, alpha_step=0.1)])
def test_slow_weights_refuse_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SlowWeights(**kwargs)


def _trainer(model: torch.nn.Module, lr: float = 0.0, **cfg) -> HybridTrainer:
    # SGD at lr 0 never moves the weights: what a step leaves is exactly what the jump did
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return HybridTrainer(model, opt, HybridConfig(**{**NO_SEGMENTS, "jump_every": 2, **cfg}))


def _bad_jump_ahead(seed: int):
    """A trainer one step in, whose slow weights were pushed far off: its jumps get rejected."""
    model, x, y = _problem(seed)
    trainer = _trainer(model)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.slow.add_(100.0)                    # a far worse point
    return model, x, y, trainer, loss


def test_an_accepted_jump_lands_on_the_slow_weights():
    model, x, y = _problem()
    trainer = _trainer(model)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)                                # slow weights start at the first step
    best = _least_squares(x, y)                       # a better point to be pulled towards
    trainer.jumps.slow.copy_(best)
    w = trainer.flat.flatten().clone()
    expected = best + 0.5 * (w - best)
    r = trainer.step(loss)                            # ends on the slow weights, unchecked
    assert r.jumped is None
    assert torch.allclose(trainer.flat.flatten(), expected, atol=1e-7)
    checks = trainer.stats.forward_checks
    r = trainer.step(loss)                            # checks the jump on its batch
    assert r.jumped is True and r.backward and not r.predicted
    assert torch.allclose(trainer.flat.flatten(), expected, atol=1e-7)
    assert torch.allclose(trainer.jumps.slow, expected, atol=1e-7)
    assert trainer.stats.forward_checks == checks + 1   # one extra forward per jump
    left = F.mse_loss(F.linear(x, w[:8].view(1, 8), w[8:]), y).item()
    assert r.loss < left
    assert r.components["jump_rise"] == pytest.approx(r.loss / left - 1)   # the verdict's number
    assert trainer.summary()["jumps"]["accepted"] == 1


def _small_rise_ahead(trainer: HybridTrainer, x: torch.Tensor, y: torch.Tensor) -> float:
    """Push the slow weights so that the next jump raises the batch loss a little; returns
    that rise (the jump lands on slow + 0.5 * (w - slow) = w + 0.5 * push)."""
    w = trainer.flat.flatten().clone()
    best = _least_squares(x, y)
    push = 0.3 * (w - best)                            # away from the least-squares optimum
    trainer.jumps.slow.copy_(w + push)

    def mse(v: torch.Tensor) -> float:
        return F.mse_loss(F.linear(x, v[:8].view(1, 8), v[8:]), y).item()
    return mse(w + 0.5 * push) / mse(w) - 1.0


def test_the_first_checks_keep_a_jump_within_the_grace_tolerance_and_later_ones_do_not():
    for grace in (1, 0):
        model, x, y = _problem(4)
        trainer = _trainer(model, jump_grace=grace, jump_grace_tolerance=0.5,
                           jump_alpha_calm=0.0)    # the rises assume a fixed pull of 0.5
        loss = lambda: F.mse_loss(model(x), y)       # noqa: E731
        trainer.step(loss)
        verdicts = []
        for _ in range(2):
            rise = _small_rise_ahead(trainer, x, y)
            assert 0.0 < rise < 0.5                   # a small rise, inside the grace
            trainer.step(loss)                        # ends on the jump
            r = trainer.step(loss)                    # checks it
            verdicts.append(r.jumped)
            assert r.components["jump_rise"] == pytest.approx(rise, rel=1e-4)
        # grace 1: only the first check tolerates the rise; grace 0: none does
        assert verdicts == ([True, False] if grace else [False, False])


def test_a_rejected_jump_is_undone_bit_exactly_and_the_slow_weights_still_move():
    model, x, y, trainer, loss = _bad_jump_ahead(1)
    w = trainer.flat.flatten().clone()
    moved = trainer.jumps.slow + 0.5 * (w - trainer.jumps.slow)
    trainer.step(loss)
    r = trainer.step(loss)
    assert r.jumped is False
    assert torch.equal(trainer.flat.flatten(), w)
    assert torch.allclose(trainer.jumps.slow, moved)
    assert r.loss == pytest.approx(F.mse_loss(model(x), y).item())
    assert trainer.summary()["jumps"]["rejected"] == 1


def test_after_a_rejection_the_check_order_flips_so_a_second_rejection_costs_one_forward():
    model, x, y = _problem(1)
    trainer = _trainer(model)
    calls = []

    def loss():
        calls.append(torch.is_grad_enabled())
        return F.mse_loss(model(x), y)

    def closure_calls(step_results: list, n: int = 1) -> list[bool]:
        calls.clear()
        step_results.extend(trainer.step(loss) for _ in range(n))
        return list(calls)

    out: list = []
    closure_calls(out)
    trainer.jumps.slow.add_(100.0)                    # a far worse point: rejected
    w = trainer.flat.flatten().clone()                # lr 0: the weights the jump leaves
    closure_calls(out)                                # ends on the jump
    # usual order: no-grad check before the jump, graded at the jump, graded redo
    assert closure_calls(out) == [False, True, True] and out[-1].jumped is False
    assert torch.equal(trainer.flat.flatten(), w)
    trainer.jumps.slow.add_(100.0)
    w = trainer.flat.flatten().clone()
    closure_calls(out)                                # ends on the next jump
    # flipped: no-grad check at the jump, weights back, graded there: no redo
    assert closure_calls(out) == [False, True] and out[-1].jumped is False
    assert out[-1].components["jump_rise"] > 0        # same number, other order
    assert torch.equal(trainer.flat.flatten(), w)     # bit-exactly back
    assert out[-1].loss == pytest.approx(F.mse_loss(model(x), y).item())
    # a jump the flipped order accepts pays the redo and lands where the usual order would
    best = _least_squares(x, y)
    trainer.jumps.slow.copy_(best)
    closure_calls(out)
    expected = trainer.jumps.slow.clone()
    assert closure_calls(out) == [False, True, True] and out[-1].jumped is True
    assert out[-1].components["jump_rise"] <= 0
    assert torch.allclose(trainer.flat.flatten(), expected, atol=1e-7)
    assert out[-1].loss == pytest.approx(F.mse_loss(model(x), y).item())
    assert trainer.summary()["jumps"]["accepted"] == 1
    assert trainer.summary()["jumps"]["rejected"] == 2


def test_full_batch_checks_take_the_last_steps_loss_and_run_no_forward_of_their_own():
    model, x, y = _problem(3)
    # slow weights from the start, as without full_batch (the next test: where they start)
    trainer = _trainer(model, lr=0.05, full_batch=True, jump_trust=0, jump_slow_start="start")
    calls = []

    def loss():
        calls.append(torch.is_grad_enabled())
        return F.mse_loss(model(x), y)

    results = [trainer.step(loss) for _ in range(9)]   # jumps end steps 2, 4, 6, 8
    checked = [i for i, r in enumerate(results) if r.jumped is not None]
    assert checked == [2, 4, 6, 8] and all(results[i].jumped for i in checked)
    assert trainer.stats.forward_checks == 0 and all(calls)   # graded forwards only
    for i in checked:   # the pair: this step's loss at the jump, the last step's loss
        rise = results[i].components["jump_rise"]
        assert rise == pytest.approx(results[i].loss / results[i - 1].loss - 1, rel=1e-6)
    # a jump that lands above where the last step started is undone, bit-exactly
    trainer.jumps.slow.add_(100.0)
    last = trainer.step(loss)                         # ends on the jump
    calls.clear()
    r = trainer.step(loss)
    assert r.jumped is False and calls == [True, True]   # graded at the jump, graded redo
    assert trainer.stats.forward_checks == 0
    assert r.components["jump_rise"] > 10.0
    assert r.loss < last.loss                         # the redo scored the weights it left
    # without full_batch the same run pays one no-grad forward per paired check
    model, x, y = _problem(3)
    plain = _trainer(model, lr=0.05, jump_trust=0)
    for _ in range(9):
        plain.step(lambda: F.mse_loss(model(x), y))
    assert plain.stats.forward_checks == 4


@pytest.mark.parametrize("full_batch, start, late", [
    (True, "auto", True), (False, "auto", False),
    (True, "start", False), (False, "first-jump", True)])
def test_the_slow_weights_start_at_the_start_or_at_the_first_jump(full_batch, start, late):
    model, x, y = _problem(3)
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    trainer = _trainer(model, lr=0.05, full_batch=full_batch, jump_trust=0,
                       jump_slow_start=start)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    first = trainer.step(loss)
    assert (trainer.jumps.slow is None) == late
    second = trainer.step(loss)                       # the first jump is due at its end
    w2 = trainer.flat.flatten().clone()
    if late:
        # the first jump only sets the slow weights: nothing moved, and the run says so
        assert torch.equal(trainer.jumps.slow, w2) and not torch.equal(w2, w0)
        assert "slow weights start here" in second.event
        assert trainer.summary()["jumps"]["accepted"] + trainer.summary()["jumps"][
            "rejected"] == 0
    else:
        assert first.event is None and torch.equal(w2, trainer.jumps.slow)
        assert trainer.jumps.slow is not None and not torch.equal(trainer.jumps.slow, w0)
    results = [trainer.step(loss) for _ in range(5)]   # steps 3-7
    checked = [i + 3 for i, r in enumerate(results) if r.jumped is not None]
    assert checked == ([5, 7] if late else [3, 5, 7])


def test_a_closure_that_raises_in_the_flipped_order_leaves_the_weights_on_the_jump():
    model, x, y, trainer, loss = _bad_jump_ahead(2)
    for _ in range(3):                                # reject one jump, end on the next
        trainer.step(loss)
    on_jump = trainer.flat.flatten().clone()
    calls = []

    def flaky():
        calls.append(torch.is_grad_enabled())
        if torch.is_grad_enabled():
            raise RuntimeError("data loader hiccup")
        return F.mse_loss(model(x), y)

    with pytest.raises(RuntimeError):
        trainer.step(flaky)
    assert calls == [False, True]                     # flipped: the check ran first
    assert torch.equal(trainer.flat.flatten(), on_jump)

    def broken():                                     # raises in the check's forward itself
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError):
        trainer.step(broken)
    assert torch.equal(trainer.flat.flatten(), on_jump)
    r = trainer.step(loss)                            # the jump is checked again
    assert r.jumped is False


def test_the_check_and_the_redo_see_the_same_dropout_masks():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Dropout(0.5),
                                torch.nn.Linear(32, 1))
    _, x, y = _problem(3)
    trainer = _trainer(model)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.slow.add_(100.0)
    reference = copy.deepcopy(model)                  # the weights the rejected jump returns to
    trainer.step(loss)
    rng = torch.get_rng_state()
    with torch.no_grad():
        expected = F.mse_loss(reference(x), y).item()  # the masks of the step's RNG state
    torch.set_rng_state(rng)
    r = trainer.step(loss)
    assert r.jumped is False
    assert r.loss == pytest.approx(expected, rel=1e-6)


def test_a_closure_that_raises_after_the_check_leaves_the_jump_pending():
    model, x, y = _problem(2)
    trainer = _trainer(model)
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 4:      # step 3: its no-grad check ran (call 3), the graded one fails
            raise RuntimeError("data loader hiccup")
        return F.mse_loss(model(x), y)

    trainer.step(flaky)
    trainer.jumps.slow.add_(100.0)                    # a jump the check must reject
    trainer.step(flaky)                               # ends on the slow weights
    jumped = trainer.flat.flatten().clone()
    with pytest.raises(RuntimeError, match="hiccup"):
        trainer.step(flaky)
    assert torch.equal(trainer.flat.flatten(), jumped)   # exactly as the step found them
    assert trainer.step(flaky).jumped is False             # and the next step checks the jump


def test_jumps_that_keep_failing_are_switched_off_with_a_reason():
    model, x, y = _problem(4)
    trainer = _trainer(model, auto_off_reprobe=0, jump_alpha=0.01)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.slow.add_(1000.0)                   # alpha 0.01: it stays far and bad
    results = [trainer.step(loss) for _ in range(40)]
    tried = [r.jumped for r in results if r.jumped is not None]
    assert tried == [False] * 6                        # the window, then nothing
    notes = [s for _, s in trainer.signals if s.name == "jumps-off"]
    assert len(notes) == 1 and "0 of the last 6" in notes[0].message
    assert "not trying again" in notes[0].message
    assert trainer.summary()["jumps"]["paused"] == notes[0].message   # the user sees why
    # the step that paused them says so (no phase change: a StepResult event, not a transition)
    events = [r for r in results if r.event]
    assert len(events) == 1 and events[0].event == notes[0].message
    assert events[0].jumped is False and events[0].transition is None
    assert events[0].event.startswith(f"step {events[0].step}:")
    assert not trainer._jump_pending


def test_a_paused_reason_clears_when_jumps_try_again():
    model, x, y = _problem(4)
    trainer = _trainer(model, auto_off_reprobe=5, jump_alpha=0.01)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.slow.add_(1000.0)
    paused_seen = False
    while not paused_seen:                             # the window of 6 rejections
        paused = trainer.step(loss)
        paused_seen = trainer.summary()["jumps"]["paused"] is not None
    assert "trying again in 5 steps" in trainer.summary()["jumps"]["paused"]
    assert paused.event == trainer.summary()["jumps"]["paused"]
    later = [trainer.step(loss) for _ in range(6)]     # past the re-probe
    assert trainer.summary()["jumps"]["paused"] is None   # jumps run again: nothing paused
    resumed = [r for r in later if r.event]
    assert len(resumed) == 1 and "resume after a 5-step pause" in resumed[0].event
    assert resumed[0].step == paused.step + 5


def test_a_jump_pause_reaches_the_metrics_log_and_the_run_report(tmp_path):
    from hybrid_predict_trainer.report import build_report
    from hybrid_predict_trainer.report.runlog import read_run

    model, x, y = _problem(4)
    path = tmp_path / "metrics.jsonl"
    trainer = _trainer(model, auto_off_reprobe=0, jump_alpha=0.01, metrics_path=str(path))
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.slow.add_(1000.0)
    for _ in range(20):
        trainer.step(loss)
    trainer.close()
    reason = trainer.summary()["jumps"]["paused"]
    events = read_run(path).events
    assert len(events) == 1 and events[0][1] == reason
    html = build_report(path, tmp_path / "out").html.read_text()
    assert "jumps onto the slow weights paused: only 0 of the last 6" in html


@pytest.mark.parametrize("full_batch", [False, True])
def test_jump_state_survives_a_checkpoint(tmp_path, full_batch):
    model, x, y = _problem(5)
    trainer = _trainer(model, lr=0.05, full_batch=full_batch)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    for _ in range(6):                                # step 6 ends on a jump, unchecked
        trainer.step(loss)
    path = trainer.save(tmp_path / "ckpt.pt")
    model2, _, _ = _problem(6)
    other = _trainer(model2, lr=0.05, full_batch=full_batch)
    other.load(path)
    assert torch.equal(other.jumps.slow, trainer.jumps.slow)
    assert other.jumps.since == trainer.jumps.since
    checks = trainer.stats.forward_checks
    a = [trainer.step(loss) for _ in range(5)]
    b = [other.step(lambda: F.mse_loss(model2(x), y)) for _ in range(5)]
    assert a[0].jumped is not None                    # the pending jump was checked after loading
    assert [r.jumped for r in a] == [r.jumped for r in b]
    assert [r.components.get("jump_rise") for r in a] == [
        r.components.get("jump_rise") for r in b]
    assert torch.equal(trainer.flat.flatten(), other.flat.flatten())
    # full batch: the last step's loss came along, so the resumed check needs no forward
    assert (other.stats.forward_checks == checks) is full_batch


def test_jump_every_zero_turns_jumps_off():
    model, x, y = _problem(7)
    trainer = _trainer(model, jump_every=0)
    results = [trainer.step(lambda: F.mse_loss(model(x), y)) for _ in range(10)]
    assert trainer.jumps is None and all(r.jumped is None for r in results)
    assert trainer.summary()["jumps"] is None


def test_segments_off_leaves_only_real_steps_and_jumps():
    model, x, y = _problem(8)
    # a gate that would always open changes nothing with segments off, and the trainer says so
    with pytest.warns(HybridWarning, match="confidence_threshold: no effect while predicted segments are off"):
        trainer = _trainer(model, lr=0.05, segments=False, confidence_threshold=0.0)
    results = [trainer.step(lambda: F.mse_loss(model(x), y)) for _ in range(40)]
    assert all(r.backward and not r.predicted for r in results)
    checked = sum(r.jumped is not None for r in results)
    s = trainer.summary()
    assert checked >= 6 and s["jumps"]["accepted"] + s["jumps"]["rejected"] == checked
    assert s["segments"] == 0 and "segments=False" in s["never_predicted_reason"]


def test_a_guard_checked_jump_costs_no_forward_and_lands_on_the_slow_weights():
    model, x, y = _problem(9)
    trainer = _trainer(model, jump_check="guard")
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    best = _least_squares(x, y)
    trainer.jumps.slow.copy_(best)
    w = trainer.flat.flatten().clone()
    expected = best + 0.5 * (w - best)
    trainer.step(loss)                                # ends on the slow weights
    checks = trainer.stats.forward_checks
    r = trainer.step(loss)                            # the guard judges the step's own loss
    assert r.jumped is True
    assert trainer.stats.forward_checks == checks     # no extra forward
    assert "jump_rise" not in r.components            # nothing paired to report
    assert torch.allclose(trainer.flat.flatten(), expected, atol=1e-7)
    s = trainer.summary()["jumps"]
    assert s["accepted"] == 1 and s["mean_drop"] is None   # nothing paired was measured


def test_a_guard_checked_jump_that_blows_the_loss_up_is_undone_bit_exactly():
    model, x, y = _problem(10)
    trainer = _trainer(model, jump_check="guard")
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.slow.add_(100.0)
    w = trainer.flat.flatten().clone()
    trainer.step(loss)
    r = trainer.step(loss)
    assert r.jumped is False
    assert torch.equal(trainer.flat.flatten(), w)
    assert r.loss == pytest.approx(F.mse_loss(model(x), y).item())   # redone at the old weights


def test_a_guard_check_keeps_a_jump_that_raises_the_loss_within_the_noise():
    # the paired check (past its grace) rejects any rise; the guard keeps a rise that is
    # no blow-up
    results = {}
    for mode in ("paired", "guard"):
        model, x, y = _problem(11)
        trainer = _trainer(model, lr=0.05, jump_check=mode, jump_alpha=0.9, jump_grace=0)
        loss = lambda: F.mse_loss(model(x), y)       # noqa: E731
        for _ in range(12):
            trainer.step(loss)
        trainer.jumps.slow.copy_(trainer.flat.flatten() + 0.02)   # a slightly worse point
        outcomes = [trainer.step(loss).jumped for _ in range(2)]
        results[mode] = [o for o in outcomes if o is not None]
    assert results == {"paired": [False], "guard": [True]}


def test_old_jump_state_without_paired_counts_loads():
    sw = SlowWeights(every=2, alpha=0.5)
    sw.start(torch.zeros(2))
    sw.record(True, 0.2)
    state = sw.state_dict()
    del state["paired"]
    other = SlowWeights(every=2, alpha=0.5)
    other.load_state_dict(state)
    assert other.summary()["mean_drop"] == pytest.approx(0.2)


def _held_copies(trainer: HybridTrainer) -> int:
    """Parameter-sized buffers the trainer and its slow weights really hold (the last
    forecast is the predictor's own buffer, counted by the predictor)."""
    n = trainer.flat.numel
    bufs = [v for k, v in vars(trainer).items()
            if torch.is_tensor(v) and v.numel() == n and k != "_last_delta"]
    if trainer.jumps is not None and trainer.jumps.slow is not None:
        bufs.append(trainer.jumps.slow)
    return len({b.data_ptr() for b in bufs})


def test_the_default_holds_three_parameter_copies_and_says_so(tmp_path):
    """With segments off, only the restore point, the jump's undo copy and the slow weights
    are held; the three update buffers that segments need are never allocated."""
    model, x, y = _problem(10)
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=0.05),
                            HybridConfig(monitor=False, warmup_steps=5))
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    for _ in range(12):
        trainer.step(loss)
    assert trainer.memory_copies() == 3.0 == _held_copies(trainer)
    # a checkpoint of the default carries no update buffers, and resumes exactly
    path = trainer.save(tmp_path / "ckpt.pt")
    model2, _, _ = _problem(11)
    other = HybridTrainer(model2, torch.optim.AdamW(model2.parameters(), lr=0.05),
                          HybridConfig(monitor=False, warmup_steps=5))
    other.load(path)
    for _ in range(6):
        trainer.step(loss)
        other.step(lambda: F.mse_loss(model2(x), y))
    assert torch.equal(trainer.flat.flatten(), other.flat.flatten())
    assert other.memory_copies() == 3.0 == _held_copies(other)


def test_segments_allocate_their_update_buffers_and_count_them():
    model, x, y = _problem(12)
    trainer = _trainer(model, lr=0.05, segments=True, confidence_threshold=0.0)
    for _ in range(20):
        trainer.step(lambda: F.mse_loss(model(x), y))
    held = _held_copies(trainer)
    assert held >= 6    # before/after/update, snapshot, scratch, slow weights (+ anchor)
    assert trainer.memory_copies() == held + trainer.predictor.memory_copies()


def test_an_adapted_alpha_rises_against_the_slope_and_never_below_the_configured_one():
    sw = SlowWeights(every=1, alpha=0.5, alpha_step=0.1)
    sw.adapt(-3.0)                                    # loss falls towards the weights: pull less
    assert sw.alpha == pytest.approx(0.6)
    sw.adapt(None)                                    # an undone jump went too far
    assert sw.alpha == pytest.approx(0.7)
    sw.adapt(1e-9)                                    # only the sign counts
    assert sw.alpha == pytest.approx(0.6)
    for _ in range(5):
        sw.adapt(1.0)
    assert sw.alpha == pytest.approx(0.5)             # never a longer pull than configured
    for _ in range(20):
        sw.adapt(-1.0)
    assert sw.alpha == pytest.approx(0.9)             # nor a pull of almost nothing
    assert sw.summary()["alpha_peak"] == pytest.approx(0.9)
    copy = SlowWeights(every=1, alpha=0.5, alpha_step=0.1)
    copy.load_state_dict({**sw.state_dict(), "slow": None})
    assert copy.alpha == pytest.approx(0.9) and copy.summary() == sw.summary()
    copy.adapt(1.0)
    assert copy.alpha == pytest.approx(0.8)           # the floor is still the configured 0.5
    fixed = SlowWeights(every=1, alpha=0.5)
    fixed.adapt(-1.0)
    assert fixed.alpha == 0.5                         # alpha_step 0: Lookahead's fixed alpha
    fixed.load_state_dict({**sw.state_dict(), "slow": None})
    assert fixed.alpha == 0.5                         # ... which a checkpoint does not override
    narrower = SlowWeights(every=1, alpha=0.3, alpha_step=0.1, alpha_max=0.6)
    narrower.load_state_dict({**sw.state_dict(), "slow": None})
    assert narrower.alpha == pytest.approx(0.6)         # a resumed alpha stays in the new range


def test_grad_dot_is_the_gradient_dotted_with_the_line():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    trainer = _trainer(model)
    model(torch.randn(5, 3)).square().sum().backward()
    a, b = torch.randn(trainer.flat.numel), torch.randn(trainer.flat.numel)
    g = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert trainer.flat.grad_dot(a, b) == pytest.approx(float(g @ (a - b)), rel=1e-5)


def test_a_kept_jump_away_from_a_better_point_shortens_the_pull():
    model, x, y = _problem(3)
    trainer = _trainer(model, jump_alpha_step=0.05)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    best = _least_squares(x, y)
    trainer.flat.write_from(best)                     # the weights sit on the optimum ...
    trainer.jumps.slow.copy_(best + 0.005)            # ... and the slow weights just off it
    trainer.step(loss)                                # ends on the jump, a tiny rise
    r = trainer.step(loss)
    assert r.jumped is True and r.components["jump_rise"] > 0   # kept within the grace
    # at the jumped point the loss falls towards the weights the jump left: pull less
    assert trainer.jumps.alpha == pytest.approx(0.55)
    assert trainer.summary()["jumps"]["alpha_peak"] == pytest.approx(0.55)
    assert "alpha 0.55 now, at most 0.55" in run_text_report(trainer)


def test_a_kept_jump_towards_a_better_point_brings_the_pull_back():
    model, x, y = _problem(3)
    trainer = _trainer(model, jump_alpha_step=0.05)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    trainer.jumps.alpha = 0.6                         # as if an earlier jump had raised it
    trainer.jumps.slow.copy_(_least_squares(x, y))    # the slow side is the better one
    trainer.step(loss)
    r = trainer.step(loss)
    assert r.jumped is True
    assert trainer.jumps.alpha == pytest.approx(0.55)


def test_an_undone_jump_shortens_the_pull():
    model, x, y, trainer, loss = _bad_jump_ahead(4)
    trainer.jumps.alpha_step = 0.1
    trainer.step(loss)                                # ends on the (far worse) jump
    r = trainer.step(loss)
    assert r.jumped is False
    assert trainer.jumps.alpha == pytest.approx(0.6)


def test_calm_jumps_shorten_the_pull_until_the_first_that_is_not():
    sw = SlowWeights(every=1, alpha=0.5, calm_alpha=0.65, calm_tolerance=0.05)
    assert sw.alpha == 0.5 and sw.calm is None        # no check yet: the configured pull
    sw.note_change(0.03)                              # a small rise
    assert sw.alpha == 0.65 and sw.calm is True
    sw.note_change(-0.049)                            # a small drop: still calm
    assert sw.alpha == 0.65
    state = sw.state_dict()
    sw.note_change(-0.2)                              # a large drop: the averaging matters
    assert sw.alpha == 0.5 and sw.calm is False
    sw.note_change(0.0)
    assert sw.alpha == 0.5                            # for good
    assert sw.summary()["alpha_peak"] == 0.65 and sw.summary()["calm"] is False
    rising = SlowWeights(every=1, alpha=0.5, calm_alpha=0.65)
    rising.note_change(0.3)                           # a large rise ends it too
    assert rising.alpha == 0.5 and rising.calm is False
    resumed = SlowWeights(every=1, alpha=0.5, calm_alpha=0.65)
    resumed.load_state_dict(state)
    assert resumed.alpha == 0.65 and resumed.calm is True
    off = SlowWeights(every=1, alpha=0.5)
    off.note_change(0.0)
    off.load_state_dict(state)                        # a checkpoint does not switch it on
    assert off.alpha == 0.5 and off.calm is None


def test_a_calm_paired_check_shortens_the_next_pull_and_a_large_change_restores_it():
    model, x, y = _problem(3)
    trainer = _trainer(model, jump_alpha_calm=0.65, jump_trust=0)   # every check paired
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    trainer.step(loss)
    best = _least_squares(x, y)
    trainer.flat.write_from(best)                     # the weights sit on the optimum ...
    trainer.jumps.slow.copy_(best + 0.005)            # ... and the slow weights just off it
    trainer.step(loss)                                # ends on the jump
    r = trainer.step(loss)                            # checks it: a tiny rise
    assert 0.0 < r.components["jump_rise"] <= 0.05
    assert trainer.jumps.alpha == 0.65 and trainer.summary()["jumps"]["calm"] is True
    assert "alpha 0.65 now, at most 0.65 (the paired checks find the jumps calm)" in \
        run_text_report(trainer)
    trainer.flat.write_from(best)
    slow = trainer.jumps.slow.clone()
    trainer.step(loss)                                # the next jump pulls by 0.65
    torch.testing.assert_close(trainer.flat.flatten(), slow + 0.65 * (best - slow))
    r = trainer.step(loss)                            # checks it: calm again
    assert abs(r.components["jump_rise"]) <= 0.05 and trainer.jumps.alpha == 0.65
    trainer.jumps.slow.add_(100.0)                    # a far worse point: a large rise
    trainer.step(loss)                                # ends on the bad jump
    r = trainer.step(loss)
    assert r.jumped is False and r.components["jump_rise"] > 0.05
    assert trainer.jumps.alpha == 0.5 and trainer.summary()["jumps"]["calm"] is False
    text = run_text_report(trainer)
    assert "alpha 0.50 now, at most 0.65" in text and "calm" not in text


@pytest.mark.parametrize("cfg", [dict(jump_alpha_calm=0.0), dict(jump_alpha_step=0.05),
                                 dict(jump_alpha=0.65), dict(jump_alpha=0.8),
                                 dict(full_batch=True)])
def test_the_calm_rule_is_off_where_something_else_sets_the_pull(cfg):
    """Off by request, under the adapted pull, where the configured pull is already as
    short as the calm one, and with ``full_batch`` (a check's pair is one step apart there:
    it measures the jump plus a step): a calm check then leaves alpha where it was."""
    model, x, y = _problem(3)
    trainer = _trainer(model, **cfg)
    assert trainer.jumps.calm_alpha == 0.0 and trainer.summary()["jumps"]["calm_alpha"] == 0.0
    alpha = trainer.jumps.alpha
    trainer.jumps.note_change(0.0)
    assert trainer.jumps.alpha == alpha and trainer.jumps.calm is None


def test_a_full_batch_run_keeps_lookaheads_pull_where_the_checks_look_calm():
    """With ``full_batch`` every paired check compares the jump with the loss one step
    earlier; checks that look calm must not shorten the pull."""
    model, x, y = _problem(3)
    trainer = _trainer(model, lr=0.01, full_batch=True, jump_trust=0)
    loss = lambda: F.mse_loss(model(x), y)           # noqa: E731
    rises = []
    for _ in range(9):
        r = trainer.step(loss)
        if r.jumped is not None:
            rises.append(r.components.get("jump_rise"))
    assert rises and all(v is not None and abs(v) <= 0.05 for v in rises)   # calm checks
    assert trainer.jumps.alpha == 0.5 and trainer.summary()["jumps"]["calm"] is None


def test_the_default_shortens_the_pull_of_calm_jumps():
    cfg = HybridConfig()
    assert cfg.jump_alpha_calm > cfg.jump_alpha and cfg.jump_alpha_step == 0.0
    assert cfg.jump_alpha_calm <= 1.0
