"""``hpt train`` under torchrun (2 gloo processes): a signal on one rank stops both with a
checkpoint, ``--resume`` continues, and the result equals an uninterrupted run bit for bit."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[run]
entry = "interrupt_task.py:build"
max_steps = 24
checkpoint_every = 8
eval_every = 8
threads = 1

[args]
hidden = 32
batch_size = 50
train_size = 1000
val_size = 300
dropout = 0.1

[hybrid]
segments = true
warmup_steps = 5
full_steps = 3
confidence_threshold = 0.0
auto_off = false
cost_model = "fixed"
max_horizon = 4
horizons = [4]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
           "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
           "-m", "hybrid_predict_trainer.cli.app", "train", *args]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "OMP_NUM_THREADS": "1", **env})
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"torchrun did not finish in 120 s (deadlock?): {exc.stderr!s:.2000}")


def test_signal_on_one_rank_stops_all_and_resume_is_exact(tmp_path):
    shutil.copy(ROOT / "examples" / "mnist_task.py", tmp_path / "mnist_task.py")
    shutil.copy(ROOT / "tests" / "cli" / "interrupt_task.py", tmp_path / "interrupt_task.py")
    cfg = tmp_path / "ddp.toml"
    cfg.write_text(CONFIG)
    ref, run = tmp_path / "ref", tmp_path / "run"

    done = torchrun([str(cfg), "--run-dir", str(ref)])
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 1 alone receives SIGINT while loading its 23rd batch (epoch 1, step 11)
    stopped = torchrun([str(cfg), "--run-dir", str(run)], HPT_TEST_INTERRUPT_AT="23",
                       HPT_TEST_INTERRUPT_RANK="1")
    assert stopped.returncode != 0                  # the interrupted worker exits with 130
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["position"]["step"] == 11
    resumed = torchrun(["--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    for folder in (ref, run):
        s = json.loads((folder / "summary.json").read_text())
        assert s["world_size"] == 2 and s["replica_max_abs_diff"] == 0.0
        assert s["steps"] == 24 and s["predicted_steps"] > 0
    a = torch.load(ref / "checkpoints" / "step-00000024.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoints" / "step-00000024.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
