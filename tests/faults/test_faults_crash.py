"""SIGKILL during ``trainer.save`` and mid-training; leftover temp files.

The full campaign (``python -m benchmarks.faults``) kills at least 20 saves; here 3 saves and
one random moment of training are killed, with every check of the campaign.
"""
from __future__ import annotations

import os
import time

import pytest
import torch

from hybrid_predict_trainer import CheckpointError
from hybrid_predict_trainer.checkpoint import (STALE_TEMP_AGE_S, load_checked,
                                               remove_stale_temps, save_atomic, stale_temps)

from benchmarks.faults import crash


def test_sigkill_during_save_and_mid_training_never_loses_the_run(tmp_path):
    res = crash.campaign(tmp_path, kills_in_save=3, kills_anywhere=1, steps=60,
                         require_landed=False)
    assert res["failures"] == []
    assert res["kills_during_save"] == 3 and res["kills_anywhere"] == 1
    assert res["kills_survived"] == res["kills"] == 4
    # after every kill the checkpoint loads, is bit-identical to the uninterrupted run at its
    # step, and is no older than the last save the killed process reported finished
    assert res["loads_ok"] == res["loads_exact"] == res["no_older_than_last_save"] >= 4
    # a temp file left by a killed save is refused, or is itself a complete state; never
    # taken for a good checkpoint; and the cleanup helper removes it
    assert res["temps_mistaken"] == 0
    assert res["temps_found"] == res["temps_refused"] + res["temps_complete"]
    assert res["temps_removed"] == res["temps_found"]
    # the run finished from its checkpoints equals the uninterrupted one, bit for bit
    assert res["resumed_bit_identical"] is True


def _state(n: int = 1000) -> dict:
    return {"w": torch.arange(n, dtype=torch.float32), "steps": n}


def test_leftover_temp_files_are_never_loaded_as_the_checkpoint(tmp_path):
    ck = tmp_path / "checkpoint.pt"
    save_atomic(_state(10), ck)
    good = ck.read_bytes()
    save_atomic(_state(20), tmp_path / "other.pt")
    whole = (tmp_path / "other.pt").read_bytes()
    # what kill -9 leaves behind: a truncated temp and a complete one (killed before rename)
    partial = tmp_path / ".checkpoint.pt.abcd1234.tmp"
    partial.write_bytes(whole[: len(whole) // 2])
    complete = tmp_path / ".checkpoint.pt.efgh5678.tmp"
    complete.write_bytes(whole)
    assert load_checked(ck)["steps"] == 10 and ck.read_bytes() == good
    assert stale_temps(ck) == sorted([partial, complete])
    assert stale_temps(tmp_path / "other.pt") == []
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checked(partial)
    # fresh temps may belong to a save in progress: kept unless min_age_s=0
    assert remove_stale_temps(ck) == []
    assert remove_stale_temps(tmp_path) == []
    old = time.time() - 2 * STALE_TEMP_AGE_S
    os.utime(partial, (old, old))
    assert remove_stale_temps(ck) == [partial]
    assert remove_stale_temps(ck, min_age_s=0) == [complete]
    assert stale_temps(tmp_path) == []
    with pytest.raises(CheckpointError, match="temp file of an interrupted save"):
        load_checked(partial)


def test_a_successful_save_removes_its_own_stale_temps_only(tmp_path):
    ck = tmp_path / "ck.pt"
    old_tmp = tmp_path / ".ck.pt.aaaa1111.tmp"
    fresh_tmp = tmp_path / ".ck.pt.bbbb2222.tmp"
    foreign = tmp_path / ".other.pt.cccc3333.tmp"
    for p in (old_tmp, fresh_tmp, foreign):
        p.write_bytes(b"partial")
    old = time.time() - 2 * STALE_TEMP_AGE_S
    for p in (old_tmp, foreign):
        os.utime(p, (old, old))
    save_atomic(_state(), ck)
    assert not old_tmp.exists()                   # abandoned long ago: removed
    assert fresh_tmp.exists() and foreign.exists()  # maybe in flight / another checkpoint's
