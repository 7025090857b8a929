"""``hpt sweep`` (Optuna, SQLite, resumable) and ``hpt bench`` (forwarding to benchmarks/)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrid_predict_trainer import HybridConfig
from hybrid_predict_trainer.cli.app import app

optuna = pytest.importorskip("optuna")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]

SWEEP = """
[run]
entry = "mnist_task.py:build"
max_steps = 16
eval_every = 4
threads = 1

[args]
hidden = 16
batch_size = 50
train_size = 400
val_size = 200

[hybrid]
warmup_steps = 4
full_steps = 2
auto_off = false
monitor = false

[sweep]
objective = "time_to_target"
target_val_loss = 2.1
study = "t"

[sweep.space]
segments = [true]
predictor = ["continuation", "extrapolation"]
max_horizon = [4, 8]
confidence_threshold = [0.0, 0.3]
jump_every = [0]
"""


def test_sweep_stores_a_resumable_study_and_prints_valid_toml(tmp_path):
    shutil.copy(ROOT / "examples" / "mnist_task.py", tmp_path / "mnist_task.py")
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    runner = CliRunner()
    first = runner.invoke(app, ["sweep", str(cfg), "--trials", "2"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["sweep", str(cfg), "--trials", "1", "-q"])
    assert second.exit_code == 0, second.output
    folder = tmp_path / "runs" / "s" / "sweep"
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{folder / 'sweep.db'}")
    assert len(study.trials) == 3                          # resumed, not restarted
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert {t.params["predictor"] for t in study.trials} <= {"continuation", "extrapolation"}
    assert all(t.user_attrs["reached"] for t in study.trials)   # target 2.1 is easy
    assert sorted(p.name for p in folder.glob("trial-*")) == [f"trial-000{i}" for i in range(3)]
    snippet = (folder / "best.toml").read_text()
    assert "[hybrid]" in second.output and snippet.strip() in second.output.replace("\n\n", "\n")
    best = tomllib.loads(snippet)["hybrid"]
    # segments on, jumps off: the segment settings are in the snippet, the jump ones are not
    assert set(best) == {"segments", "jump_every", "max_horizon", "confidence_threshold",
                         "divergence_sigma", "correction_interval", "predictor", "check_every",
                         "horizons"}
    assert best["segments"] is True and best["jump_every"] == 0
    HybridConfig.from_dict(best)                           # the snippet is a valid config
    best_trial = min(study.trials, key=lambda t: t.value)
    assert best["predictor"] == best_trial.params["predictor"]


def _space(**narrow):
    from hybrid_predict_trainer.cli.schema import SweepSection
    from hybrid_predict_trainer.cli.sweep import search_space
    return search_space(SweepSection(objective="val_loss", space=narrow))


def test_segment_settings_are_searched_only_when_segments_are_on():
    from hybrid_predict_trainer.cli.sweep import changed_settings, suggest

    base = HybridConfig()
    # FixedTrial raises on any parameter it is asked for and was not given: so these trials
    # prove which settings each branch draws
    off = optuna.trial.FixedTrial({"segments": False, "jump_every": 5, "divergence_sigma": 3.0,
                                   "jump_check": "guard", "jump_alpha": 0.6,
                                   "jump_alpha_step": 0.05})
    cfg = suggest(off, _space(), base)
    assert (cfg.segments, cfg.jump_every, cfg.jump_check, cfg.jump_alpha,
            cfg.jump_alpha_step) == (False, 5, "guard", 0.6, 0.05)
    assert cfg.max_horizon == base.max_horizon and cfg.predictor == base.predictor
    assert set(changed_settings(cfg)) == {"segments", "jump_every", "divergence_sigma",
                                          "jump_check", "jump_alpha", "jump_alpha_step"}
    on = optuna.trial.FixedTrial({"segments": True, "jump_every": 0, "divergence_sigma": 3.0,
                                  "max_horizon": 8, "confidence_threshold": 0.5,
                                  "correction_interval": 2, "predictor": "rssm",
                                  "check_every": 2})
    cfg = suggest(on, _space(), base)
    assert (cfg.segments, cfg.jump_every, cfg.max_horizon, cfg.predictor) == (True, 0, 8, "rssm")
    assert max(cfg.horizons) == 8
    settings = changed_settings(cfg)
    assert "jump_check" not in settings and settings["horizons"] == list(cfg.horizons)
    HybridConfig.from_dict(settings)            # the snippet's settings form a valid config
    with pytest.raises(ValueError):             # segments on draws the segment settings
        suggest(optuna.trial.FixedTrial({"segments": True, "jump_every": 0,
                                         "divergence_sigma": 3.0}), _space(), base)


def test_the_calm_rule_is_searched_only_where_it_can_act():
    from hybrid_predict_trainer.cli.sweep import changed_settings, suggest

    common = {"segments": False, "jump_every": 5, "divergence_sigma": 3.0}
    acts = optuna.trial.FixedTrial({**common, "jump_check": "paired", "jump_alpha": 0.5,
                                    "jump_alpha_step": 0.0, "jump_alpha_calm": 0.0})
    cfg = suggest(acts, _space(), HybridConfig())
    assert cfg.jump_alpha_calm == 0.0 and changed_settings(cfg)["jump_alpha_calm"] == 0.0
    assert cfg.inert_settings() == {}
    # FixedTrial raises when asked for a value it lacks: these trials never draw the rule
    for rest in ({"jump_check": "guard", "jump_alpha": 0.5, "jump_alpha_step": 0.0},
                 {"jump_check": "paired", "jump_alpha": 0.7, "jump_alpha_step": 0.0},
                 {"jump_check": "paired", "jump_alpha": 0.5, "jump_alpha_step": 0.05}):
        cfg = suggest(optuna.trial.FixedTrial({**common, **rest}), _space(), HybridConfig())
        assert cfg.inert_settings() == {} and "jump_alpha_calm" not in changed_settings(cfg)
    # nor on a full-batch task, where no check sees a jump alone
    cfg = suggest(optuna.trial.FixedTrial({**common, "jump_check": "paired", "jump_alpha": 0.5,
                                           "jump_alpha_step": 0.0}), _space(),
                  HybridConfig(full_batch=True))
    assert cfg.inert_settings() == {} and "jump_alpha_calm" not in changed_settings(cfg)
    with pytest.raises(ValueError):
        suggest(optuna.trial.FixedTrial({**common, "jump_check": "paired", "jump_alpha": 0.5,
                                         "jump_alpha_step": 0.0}), _space(), HybridConfig())


def test_a_narrowed_key_with_one_choice_is_fixed_not_searched():
    from hybrid_predict_trainer.cli.sweep import suggest

    space = _space(segments=[False], jump_every=[5], jump_check=["paired"], jump_alpha=[0.5, 0.5],
                   jump_alpha_step=[0.0], jump_alpha_calm=[0.65])
    cfg = suggest(optuna.trial.FixedTrial({"divergence_sigma": 4.0}), space, HybridConfig())
    assert (cfg.segments, cfg.jump_every, cfg.jump_check, cfg.jump_alpha,
            cfg.jump_alpha_calm) == (False, 5, "paired", 0.5, 0.65)


def test_sweep_without_a_sweep_table_is_refused(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.split("[sweep]")[0])
    result = CliRunner().invoke(app, ["sweep", str(cfg)])
    assert result.exit_code == 2 and "needs a [sweep] table" in result.output


def test_bench_forwards_to_the_repository_suite(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    helped = CliRunner().invoke(app, ["bench", "--help"])
    assert helped.exit_code == 0 and "--quick" in helped.output and "--workloads" in helped.output
    bad = CliRunner().invoke(app, ["bench", "--no-such-flag"])
    assert bad.exit_code == 2
    monkeypatch.chdir(tmp_path)
    elsewhere = CliRunner().invoke(app, ["bench", "--quick"])
    assert elsewhere.exit_code == 2 and "repository root" in elsewhere.output


def test_a_sweep_where_no_trial_reaches_the_target_recommends_the_closest_miss(tmp_path):
    # Infeasible trials score twice their time for the sampler; the recommendation must not
    # be the fastest miss but the trial whose validation loss came closest to the target.
    shutil.copy(ROOT / "examples" / "mnist_task.py", tmp_path / "mnist_task.py")
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP.replace("target_val_loss = 2.1", "target_val_loss = 0.0001"))
    result = CliRunner().invoke(app, ["sweep", str(cfg), "--trials", "3"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "runs" / "s" / "sweep"
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{folder / 'sweep.db'}")
    assert not any(t.user_attrs["reached"] for t in study.trials)
    closest = min(study.trials, key=lambda t: t.user_attrs["final_val_loss"])
    snippet = (folder / "best.toml").read_text()
    assert f"(trial {closest.number})" in snippet
    assert "which no trial reached" in snippet
    best = tomllib.loads(snippet)["hybrid"]
    assert best["predictor"] == closest.params["predictor"]
