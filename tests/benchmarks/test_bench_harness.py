"""The harness on a toy workload: same start for every method, tuning from the grid, a
report entry with the documented keys. Seconds only; no timing is asserted."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from benchmarks.costs import measure_costs
from benchmarks.analysis import TARGET_SLACK, crossing, tail_mean
from benchmarks.harness import (BenchConfig, Harness, RunResult, Spec, beyond_edge,
                                median_timed, run_group, run_once, tuning_rank)
from benchmarks.methods import LR_GRID, METHODS
from benchmarks.report import SCHEMA_KEYS, _clean, _lr_cell, markdown
from benchmarks.summary import summarise
from benchmarks.workloads import Data, Workload, epoch_batches


@pytest.fixture()
def toy() -> tuple[Workload, Data]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    y = torch.tanh(x @ torch.randn(8, 1, generator=gen))
    data = Data(x[:192], y[:192], x[192:], y[192:])
    wl = Workload(name="toy", description="toy regression", default_lr=0.01, steps=30,
                  eval_every=5, batch_size=32, load=lambda: data,
                  build_model=lambda d: nn.Sequential(nn.Linear(8, 16), nn.Tanh(),
                                                      nn.Linear(16, 1)),
                  per_sample_loss=lambda out, t: ((out - t) ** 2).mean(dim=1),
                  batches=lambda d, seed: epoch_batches(d, seed, 32))
    return wl, data


def test_run_once_stops_and_counts(toy: tuple[Workload, Data]) -> None:
    wl, data = toy
    res = run_once(wl, data, METHODS["adamw"], 0.01, 0, role="eval", max_steps=12)
    assert res.ok and res.steps == 12 and res.backward_passes == 12
    assert [p[0] for p in res.points] == [0, 5, 10, 12]
    assert all(b[1] >= a[1] for a, b in zip(res.points, res.points[1:]))  # time is monotone
    stopped = run_once(wl, data, METHODS["adamw"], 0.01, 0, role="eval", max_steps=30,
                       stop_at=10.0, min_steps=20)
    assert stopped.stopped == "target" and stopped.steps == 20
    diverged = run_once(wl, data, METHODS["adamw"], 1e4, 0, role="eval", max_steps=30)
    assert diverged.stopped == "diverged" and not diverged.ok


def test_harness_end_to_end(toy: tuple[Workload, Data]) -> None:
    wl, data = toy
    methods = [METHODS[m] for m in ("adamw-tuned", "adamw", "lookahead", "selective-backprop")]
    h = Harness(wl, data, methods, BenchConfig(seeds=2, max_repeats=0, warmup_steps=3,
                                               tune_repeats=1), log=lambda _: None)
    h.warm_up()
    h.tune()
    grid = {wl.default_lr * m for m in LR_GRID}
    assert set(h.lrs) == {m.name for m in methods}
    assert all(lr in grid for lr in h.lrs.values())
    assert h.lrs["adamw"] == wl.default_lr
    assert len([r for r in h.runs if r.role == "tune"]) == 4 * 3   # same budget per method
    h.evaluate_seeds()
    for seed in (0, 1):
        starts = {r.points[0][4] for r in h.runs if r.role != "tune" and r.seed == seed}
        assert len(starts) == 1, "every method of a seed starts from the same weights"
    entry = summarise(h, measure_costs(wl, data, reps=3, warmup=1))
    assert set(entry["methods"]) == {m.name for m in methods}
    for e in entry["methods"].values():
        assert set(SCHEMA_KEYS) <= set(e)
    base = entry["methods"]["adamw-tuned"]
    assert base["reached_target"] and base["speedup_median"] == pytest.approx(1.0)
    report = {"command": "test", "elapsed_s": 1.0, "machine": {}, "lr_grid": list(LR_GRID),
              "seeds": 2, "workloads": {"toy": entry}}
    json.dumps(_clean(report), allow_nan=False)
    assert "| adamw-tuned |" in markdown(report)


def test_a_short_tuning_run_is_timed_several_times_and_its_median_counts(
        toy: tuple[Workload, Data]) -> None:
    wl, data = toy
    methods = [METHODS["adamw-tuned"], METHODS["lookahead"]]
    # no time cap in effect: whether a run reaches the target must not depend on the load
    h = Harness(wl, data, methods, BenchConfig(seeds=1, max_repeats=0, warmup_steps=3,
                                               tune_repeats=3, time_cap_factor=1e6),
                log=lambda _: None)
    h.tune()
    table = h.tuning["lookahead"]["grid"]
    target = h.tuning["lookahead"]["target"]
    reached = [lr for lr in sorted({wl.default_lr * m for m in LR_GRID})
               if "time_to_target_s" in table[f"{lr:g}"]]
    assert reached, "the toy reaches its target at some lr of the grid"
    runs = [r for r in h.runs if r.role == "tune" and r.method == "lookahead"]
    assert len(runs) == 4 * 3 and h.tuning["lookahead"]["repeats"] == 3   # the group, 3 times
    for lr in reached:
        times = sorted(crossing(r.points, target)[0] for r in runs if r.lr == lr)
        assert len(times) == 3 and table[f"{lr:g}"]["time_to_target_s"] == times[1]
    assert h.lrs["lookahead"] == min(
        reached, key=lambda lr: table[f"{lr:g}"]["time_to_target_s"])


@pytest.fixture()
def groups(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, float]]]:
    """Each lock-step group the harness runs, as (method, lr) pairs."""
    seen: list[list[tuple[str, float]]] = []
    real = run_group

    def spy(workload: Workload, d: Data, specs: list[Spec], seed: int, **kw: object) -> list:
        seen.append([(s.method.name, s.lr) for s in specs])
        return real(workload, d, specs, seed, **kw)

    monkeypatch.setattr("benchmarks.harness.run_group", spy)
    return seen


def test_a_methods_tuning_runs_train_side_by_side(
        toy: tuple[Workload, Data], groups: list[list[tuple[str, float]]]) -> None:
    """Tuning compares one method's lrs by time, so those runs share the machine's drift:
    each method's grid is one lock-step group, never four runs made one after another."""
    wl, data = toy
    methods = [METHODS["adamw-tuned"], METHODS["lookahead"], METHODS["hybrid-guard"]]
    h = Harness(wl, data, methods, BenchConfig(seeds=1, max_repeats=0, warmup_steps=3,
                                               tune_repeats=1), log=lambda _: None)
    h.tune()
    grid = [wl.default_lr * m for m in LR_GRID]
    assert groups == [[(m.name, lr) for lr in grid] for m in methods]
    runs = [r for r in h.runs if r.role == "tune"]
    assert {r.seed for r in runs} == {1000} and len(runs) == 3 * len(grid)
    for m in methods[1:]:
        assert h.tuning[m.name]["side_by_side"] and h.lrs[m.name] in grid


def test_beyond_edge_names_the_next_lr_past_the_edge_where_the_best_lies() -> None:
    grid = [0.002, 0.004, 0.008, 0.016]
    assert beyond_edge(0.016, grid) == pytest.approx(0.032)
    assert beyond_edge(0.002, grid) == pytest.approx(0.001)
    assert beyond_edge(0.004, grid) is None and beyond_edge(0.008, grid) is None
    assert beyond_edge(0.032, grid + [0.032]) == pytest.approx(0.064)
    assert beyond_edge(0.016, [0.016]) is None      # one lr has no inside


def test_tuning_rank_puts_sooner_first_then_lower_loss_then_failures() -> None:
    entries = [{"loss_at_cap": None}, {"loss_at_cap": 0.4}, {"time_to_target_s": 0.5},
               {"loss_at_cap": float("nan")}, {"time_to_target_s": 0.2}, {"loss_at_cap": 0.3}]
    order = sorted(entries, key=tuning_rank)
    assert order[:4] == [{"time_to_target_s": 0.2}, {"time_to_target_s": 0.5},
                         {"loss_at_cap": 0.3}, {"loss_at_cap": 0.4}]
    assert all(tuning_rank(e)[1] == float("inf") for e in order[4:])


def _edge_toy(toy: tuple[Workload, Data]) -> tuple[Workload, Data]:
    """The toy with a default lr so small that every method's best lies at the grid's top."""
    wl, data = toy
    return replace(wl, default_lr=1e-4), data


@pytest.mark.parametrize("extend", [0, 1])
def test_a_method_tuned_at_the_grids_edge_tries_the_next_lr_beside_it(
        toy: tuple[Workload, Data], groups: list[list[tuple[str, float]]], extend: int) -> None:
    """A best lr at the grid's top may not be the best: with ``tune_extend`` the method also
    runs twice that lr, side by side with the edge lr, and keeps the better one; without, the
    tuning table still says that the lr lies at the edge."""
    wl, data = _edge_toy(toy)
    h = Harness(wl, data, [METHODS["adamw-tuned"], METHODS["lookahead"]],
                BenchConfig(seeds=1, max_repeats=0, warmup_steps=3, tune_repeats=1,
                            tune_extend=extend), log=lambda _: None)
    h.tune()
    grid = [wl.default_lr * m for m in LR_GRID]
    top = grid[-1]
    base = h.tuning["adamw-tuned"]
    # the baseline's best at this tiny lr is the grid's top (its loss at the budget falls
    # with the lr), so it tries one lr beyond when allowed, alone: its criterion is no time
    assert min(base["scores"], key=base["scores"].get) == f"{top:g}"
    assert groups[0] == [("adamw-tuned", lr) for lr in grid]
    t = h.tuning["lookahead"]
    assert min(t["grid"], key=lambda lr: tuning_rank(t["grid"][lr])) == f"{top:g}"
    w = {"tuning": h.tuning}
    if extend == 0:
        assert all(lr in grid for _, lr in (x for g in groups for x in g))
        assert base["extended"] == [] and t["extended"] == []
        assert h.lrs["adamw-tuned"] == h.lrs["lookahead"] == top
        assert _lr_cell("lookahead", top, w) == f"{top:g} (edge)"
        return
    (b,) = base["extended"]
    assert groups[1] == [("adamw-tuned", 2 * top)] and b["lr"] == pytest.approx(2 * top)
    assert b["kept"] == (b["score"] < base["scores"][f"{top:g}"])
    assert h.lrs["adamw-tuned"] == pytest.approx(b["lr"] if b["kept"] else top)
    (entry,) = t["extended"]
    assert entry["edge_lr"] == top and entry["lr"] == pytest.approx(2 * top)
    assert groups[-1] == [("lookahead", top), ("lookahead", entry["lr"])]   # side by side
    assert entry["kept"] == (tuning_rank(entry["beyond"]) < tuning_rank(entry["edge"]))
    lr = h.lrs["lookahead"]
    assert lr == pytest.approx(entry["lr"] if entry["kept"] else top)
    # kept: past the grid, and still the highest tried (one try allowed); else at the top
    assert _lr_cell("lookahead", lr, w) == (
        f"{lr:g} (beyond the grid) (edge)" if entry["kept"] else f"{lr:g}")


def test_the_report_marks_an_lr_past_the_grid_and_one_at_its_edge() -> None:
    grid = {"0.002": {}, "0.004": {}, "0.008": {}, "0.016": {}}
    w = {"tuning": {
        "a": {"grid": grid, "extended": [{"lr": 0.032}]},
        "b": {"grid": grid, "extended": [{"lr": 0.032}, {"lr": 0.064}]},
        "base": {"scores": {"0.002": 1.0, "0.004": 0.9, "0.008": 0.8, "0.016": 0.85}},
        "old": {"grid": grid}}}       # a report written before the extension
    assert _lr_cell("a", 0.032, w) == "0.032 (beyond the grid) (edge)"
    assert _lr_cell("b", 0.032, w) == "0.032 (beyond the grid)"
    assert _lr_cell("b", 0.016, w) == "0.016"
    assert _lr_cell("base", 0.008, w) == "0.008"
    assert _lr_cell("old", 0.016, w) == "0.016 (edge)"
    assert _lr_cell("old", 0.002, w) == "0.002 (edge)"
    assert _lr_cell("adamw", 0.004, w) == "0.004"      # untuned: no table


def test_a_lock_step_group_trains_each_method_exactly_as_alone(
        toy: tuple[Workload, Data]) -> None:
    wl, data = toy
    names = ("adamw", "lookahead", "hybrid-guard")
    alone = [run_once(wl, data, METHODS[m], 0.01, 3, role="eval", max_steps=20) for m in names]
    group = run_group(wl, data, [Spec(METHODS[m], 0.01, "eval", 20) for m in names], 3)
    for a, g in zip(alone, group):
        assert g.method == a.method and g.steps == a.steps == 20
        assert [p[4] for p in g.points] == [p[4] for p in a.points], a.method
        assert g.backward_passes == a.backward_passes


def test_the_baselines_end_sets_the_others_stopping_rules(toy: tuple[Workload, Data]) -> None:
    wl, data = toy
    methods = [METHODS[m] for m in ("adamw-tuned", "adamw", "lookahead")]
    h = Harness(wl, data, methods, BenchConfig(seeds=1, max_repeats=0, warmup_steps=3),
                log=lambda _: None)
    h.lrs = {"adamw-tuned": 0.02, "adamw": 0.01, "lookahead": 0.02}
    h.evaluate_seeds()
    runs = {r.method: r for r in h.runs if r.role == "eval"}
    base = runs["adamw-tuned"]
    assert base.stopped == "budget" and base.steps == wl.steps
    # lookahead had no stopping rule until the baseline ended, then one: target or time cap
    assert runs["lookahead"].stopped in ("target", "time")
    assert runs["adamw"].steps >= wl.steps            # plain AdamW completes the budget
    assert all(r.other_cores is not None for r in h.runs)
    assert {r.method for r in h.runs if r.role == "ref"} == set()   # every lr was covered


def test_a_short_seed_is_timed_several_times_and_each_methods_median_run_counts(
        toy: tuple[Workload, Data], monkeypatch: pytest.MonkeyPatch) -> None:
    wl, data = toy
    methods = [METHODS[m] for m in ("adamw-tuned", "adamw", "lookahead")]
    h = Harness(wl, data, methods, BenchConfig(seeds=2, max_repeats=0, warmup_steps=3,
                                               eval_repeats=3), log=lambda _: None)
    h.lrs = {"adamw-tuned": 0.02, "adamw": 0.01, "lookahead": 0.02}
    made: list[list[RunResult]] = []
    real = h.run_side_by_side

    def spy(*args: object, **kw: object) -> list[RunResult]:
        made.append(real(*args, **kw))
        return made[-1]

    monkeypatch.setattr(h, "run_side_by_side", spy)
    h.evaluate_seeds()                    # the toy's baseline trains for milliseconds
    assert len(made) == 2 * 3
    for seed in (0, 1):
        groups = [g for g in made if g[0].seed == seed]
        kept = [r for r in h.runs if r.seed == seed]
        assert len(kept) == len(methods)  # one run per method and seed reaches the summary
        for attempts in zip(*groups):     # the same trajectory in every attempt (its length
            n = min(len(r.points) for r in attempts)     # depends on the time rules)
            assert len({tuple(p[4] for p in r.points[:n]) for r in attempts}) == 1
        base = next(r for r in kept if r.method == "adamw-tuned")
        own = tail_mean(base.points) * TARGET_SLACK          # the baseline's own target
        assert sorted(crossing(g[0].points, own)[0] for g in groups)[1] == \
            crossing(base.points, own)[0]
        def when(r: RunResult) -> tuple[float, float]:  # time to the target; a miss: last
            hit = crossing(r.points, own)
            return (hit[0], 0.0) if hit else (float("inf"), r.train_time_s)

        la = [g[2] for g in groups]           # the harness's target for every attempt
        chosen = median_timed(groups, own)[2]
        assert chosen in kept and when(chosen) == sorted(when(r) for r in la)[1]


def test_median_timed_ranks_a_run_that_missed_the_target_last() -> None:
    def run(method: str, t: float, reached: bool) -> RunResult:
        r = RunResult("toy", method, 0.01, 0, "eval", train_time_s=t)
        r.points = [(0, 0.0, 0, 0, 1.0), (5, t / 2, 5, 0, 0.8), (10, t, 10, 0, 0.5)]
        if not reached:
            r.points = [(0, 0.0, 0, 0, 1.0), (5, t / 2, 5, 0, 0.95), (10, t, 10, 0, 0.9)]
        return r

    groups = [[run("adamw-tuned", 1.0, True), run("lookahead", 0.1, False)],
              [run("adamw-tuned", 3.0, True), run("lookahead", 0.5, True)],
              [run("adamw-tuned", 2.0, True), run("lookahead", 0.9, True)]]
    base, la = median_timed(groups, 0.8)
    assert base is groups[2][0]                        # times in proportion to 1, 3, 2: the median
    assert la is groups[2][1]                          # 0.5, 0.9 and "missed": 0.9


def test_a_groups_order_is_shuffled_every_round_and_repeats_with_its_seed(
        toy: tuple[Workload, Data], monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed order puts each method after the same other one every round (and its step
    finds the caches that one left); a seeded shuffle varies that and stays repeatable."""
    import benchmarks.harness as harness

    wl, data = toy
    names = ("adamw", "lookahead", "hybrid-guard", "selective-backprop")
    real = harness._advance

    def record(seen: list[str]):
        def advance(workload: Workload, d: Data, live: object) -> None:
            seen.append(live.spec.method.name)            # type: ignore[attr-defined]
            real(workload, d, live)                        # type: ignore[arg-type]
        return advance

    orders = []
    for _ in range(2):
        seen: list[str] = []
        monkeypatch.setattr(harness, "_advance", record(seen))
        run_group(wl, data, [Spec(METHODS[m], 0.01, "eval", 20) for m in names], 5)
        orders.append([tuple(seen[i:i + len(names)]) for i in range(0, len(seen), len(names))])
    rounds = orders[0]
    assert len(rounds) == 20 and all(sorted(r) == sorted(names) for r in rounds)
    assert len(set(rounds)) > 1                      # not one fixed order
    follows = {(r[i], r[i + 1]) for r in rounds for i in range(len(names) - 1)}
    assert len(follows) > len(names)                 # methods follow more than one other
    assert orders[1] == rounds                       # the same seed, the same orders


def test_a_hybrid_run_records_where_its_jumps_were_kept_and_undone(
        toy: tuple[Workload, Data]) -> None:
    wl, data = toy
    res = run_once(wl, data, METHODS["hybrid-jumps"], 0.04, 0, role="eval", max_steps=30)
    jumps = res.stats["jumps"]
    # the timeline's marks are the trainer's own verdicts, step by step
    assert len(res.jumps_kept_steps) == jumps["accepted"] > 0
    assert len(res.jumps_undone_steps) == jumps["rejected"]
    marked = sorted(res.jumps_kept_steps + res.jumps_undone_steps)
    assert len(set(marked)) == len(marked) and 1 <= marked[0] and marked[-1] <= res.steps
    plain = run_once(wl, data, METHODS["lookahead"], 0.04, 0, role="eval", max_steps=30)
    assert plain.jumps_kept_steps == plain.jumps_undone_steps == []


def test_the_timeline_marks_the_jumps_and_still_draws_a_report_written_before_them(
        toy: tuple[Workload, Data], tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    from benchmarks import plots
    wl, data = toy
    run = run_once(wl, data, METHODS["hybrid-jumps"], 0.04, 0, role="eval",
                   max_steps=30).to_dict()
    old = {k: v for k, v in run.items() if not k.startswith("jumps_")}
    old["method"] = "hybrid-older-report"
    drawn = []
    real_plot = plots.plt.Axes.plot

    def spy(ax, *args, **kw):
        drawn.append((list(args[0]), args[2] if len(args) > 2 else None))
        return real_plot(ax, *args, **kw)

    monkeypatch.setattr(plots.plt.Axes, "plot", spy)
    path = plots.timeline("toy", {"runs": [run, old]}, tmp_path / "t.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert (run["jumps_kept_steps"], "|") in drawn
