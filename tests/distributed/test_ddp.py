"""Two gloo processes under torchrun: replicas stay bit-identical through a rollback and a
checkpoint resume, and every rank takes the same decisions."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), str(HERE / "ddp_worker.py"), str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as exc:   # a deadlock is a failure, not a hang
        pytest.fail(f"DDP run did not finish in 120 s (deadlock?): {exc.stderr!s:.2000}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_whole_cycle_with_rollback_runs_on_both_ranks(ddp_run):
    r0, r1 = ddp_run
    pairs = set(map(tuple, r0["transitions"]))
    assert {("warmup", "full"), ("full", "predict"), ("predict", "correct")} <= pairs
    assert r0["summary"]["rollbacks"] >= 1 and r0["summary"]["predicted_steps"] > 0
    assert any(s["rolled_back"] for s in r0["log"])


def test_every_rank_takes_the_same_decisions(ddp_run):
    r0, r1 = ddp_run
    key = [(s["phase"], s["backward"], s["predicted"], s["rolled_back"]) for s in r0["log"]]
    assert key == [(s["phase"], s["backward"], s["predicted"], s["rolled_back"])
                   for s in r1["log"]]
    assert r0["summary"] == r1["summary"]
    # the losses the decisions used are the averaged ones: equal on both ranks
    assert [s["loss"] for s in r0["log"]] == [s["loss"] for s in r1["log"]]


def test_replicas_are_bit_identical_and_a_checkpoint_resumes(ddp_run):
    for r in ddp_run:
        assert r["diff_end"] == 0.0
        assert r["diff_loaded"] == 0.0
        assert r["diff_resumed"] == 0.0
        assert r["resumed_steps"] == 40
    r0, r1 = ddp_run
    # continuing from the checkpoint replays the original run's decisions on the same batches
    assert ([(s["phase"], s["backward"]) for s in r0["log_resumed"]]
            == [(s["phase"], s["backward"]) for s in r0["log"][30:40]])
