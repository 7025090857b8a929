"""``hpt train``: run folder, JSONL, checkpoints, Ctrl-C and an exact resume."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hybrid_predict_trainer.cli.app import app
from hybrid_predict_trainer.report.runlog import read_run

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

CONFIG = """
[run]
entry = "interrupt_task.py:build"
epochs = 2
seed = 3
checkpoint_every = 10
eval_every = 6
log_every = 5
threads = 1
tensorboard = {tensorboard}

[args]
hidden = 32
batch_size = 50
train_size = 600
val_size = 300
dropout = 0.1
epochs_for_schedule = 2

[hybrid]
segments = true
warmup_steps = 5
full_steps = 3
confidence_threshold = 0.0
auto_off = false
cost_model = "fixed"
"""


def write_task(folder: Path, tensorboard: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples" / "mnist_task.py", folder / "mnist_task.py")
    shutil.copy(HERE / "interrupt_task.py", folder / "interrupt_task.py")
    cfg = folder / "task.toml"
    cfg.write_text(CONFIG.format(tensorboard=str(tensorboard).lower()))
    return cfg


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run, in-process (24 steps)."""
    cfg = write_task(tmp_path_factory.mktemp("ref"), tensorboard=True)
    result = CliRunner().invoke(app, ["train", str(cfg)])
    assert result.exit_code == 0, result.output
    run = cfg.parent / "runs" / "task"
    (run / "output.txt").write_text(result.output)
    return run


def weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / f"step-{step:08d}.pt", weights_only=True)["model"]


def test_run_folder_holds_config_metrics_checkpoints_and_summary(reference):
    out = (reference / "output.txt").read_text()
    assert "step 5/24 phase=" in out and "saved=" in out and "speedup~" in out   # plain lines
    assert (reference / "config.toml").read_text().startswith("\n[run]")
    state = json.loads((reference / "state.json").read_text())
    assert state["status"] == "finished" and state["position"]["step"] == 24
    assert state["position"]["epoch"] == 2 and state["position"]["batch"] == 0
    log = read_run(reference)
    assert [r["step"] for r in log.steps] == list(range(24))
    assert [e["step"] for e in log.evals] == [6, 12, 18, 24]
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["predicted_steps"] > 0 and summary["steps"] == 24
    assert summary["backward_saved"] == 24 - summary["backward_passes"]
    assert summary["final_val_loss"] == pytest.approx(log.evals[-1]["val_loss"])
    assert "Training health" in (reference / "health.txt").read_text()
    kept = sorted(p.name for p in (reference / "checkpoints").glob("*.pt"))
    assert kept == ["step-00000020.pt", "step-00000020.run.pt", "step-00000024.pt",
                    "step-00000024.run.pt"]
    assert list((reference / "tensorboard").glob("events.out.tfevents.*"))


def test_existing_run_is_not_overwritten_and_finished_run_extends(reference, tmp_path):
    cfg = reference.parent.parent / "task.toml"
    again = CliRunner().invoke(app, ["train", str(cfg)])
    assert again.exit_code == 2 and "already holds a run" in again.output
    copy = tmp_path / "run"
    shutil.copytree(reference, copy)
    more = CliRunner().invoke(app, ["train", "--resume", str(copy), "--epochs", "3", "-q"])
    assert more.exit_code == 0, more.output
    log = read_run(copy)
    assert [r["step"] for r in log.steps] == list(range(36))
    assert json.loads((copy / "state.json").read_text())["position"]["epoch"] == 3


def test_resume_keeps_the_budget_the_run_was_given_on_the_command_line(tmp_path):
    cfg = write_task(tmp_path / "cfg")
    run = tmp_path / "short"
    first = CliRunner().invoke(app, ["train", str(cfg), "--run-dir", str(run),
                                     "--max-steps", "10", "-q"])
    assert first.exit_code == 0, first.output
    assert json.loads((run / "state.json").read_text())["budget"] == {"epochs": 2,
                                                                    "max_steps": 10}
    again = CliRunner().invoke(app, ["train", "--resume", str(run), "-q"])   # no flags
    assert again.exit_code == 0, again.output
    assert [r["step"] for r in read_run(run).steps] == list(range(10))   # not the config's
    more = CliRunner().invoke(app, ["train", "--resume", str(run), "--max-steps", "14", "-q"])
    assert more.exit_code == 0, more.output                              # 2 epochs (24)
    assert [r["step"] for r in read_run(run).steps] == list(range(14))
    assert json.loads((run / "state.json").read_text())["budget"]["max_steps"] == 14


def test_ctrl_c_saves_and_resume_continues_bit_identically(reference, tmp_path):
    cfg = write_task(tmp_path / "cfg")
    run = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "hybrid_predict_trainer.cli.app", "train"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(cmd + [str(cfg), "--run-dir", str(run)], capture_output=True,
                           text=True, timeout=120,
                           env={**env, "HPT_TEST_INTERRUPT_AT": "17"})   # epoch 1, batch 5
    assert first.returncode == 130, first.stdout + first.stderr
    assert f"hpt train --resume {run}" in first.stdout.replace("\n", "")
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted"
    assert state["position"] == {**state["position"], "epoch": 1, "batch": 4, "step": 16}

    second = subprocess.run(cmd + ["--resume", str(run)], capture_output=True, text=True,
                            timeout=120, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    ref_w, res_w = weights(reference, 24), weights(run, 24)
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)
    ref_log, res_log = read_run(reference), read_run(run)
    assert [r["step"] for r in res_log.steps] == list(range(24))
    assert [r["loss"] for r in res_log.steps] == [r["loss"] for r in ref_log.steps]
    assert [e["val_loss"] for e in res_log.evals] == [e["val_loss"] for e in ref_log.evals]
