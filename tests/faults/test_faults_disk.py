"""A full disk, a read-only file system and bad paths while saving: a clear CheckpointError,
the trainer's state untouched, the previous checkpoint intact, no temp file left, and training
goes on (see ``benchmarks/faults/disk.py``)."""
from __future__ import annotations

import pytest

from benchmarks.faults import disk


def _check(rec: dict) -> None:
    assert rec["outcome"] == "refused", rec["message"]
    assert rec["clear_error"], rec["message"]          # CheckpointError naming path and cause
    assert "\n" not in rec["message"]
    assert rec["state_unchanged"]
    assert rec["previous_intact"]
    assert rec["no_temp_left"]
    assert rec["continues"], rec["message"]


@pytest.mark.parametrize("case", disk.CASES, ids=[c.name for c in disk.CASES])
def test_save_fault_is_a_clear_error_and_nothing_is_lost(case, tmp_path):
    _check(disk.run_case(case.name, case.cause, case.inject, tmp_path))


def test_real_file_size_limit_in_a_child_process(tmp_path):
    """A real kernel write error (EFBIG from RLIMIT_FSIZE), not a simulated one."""
    rec = disk.run_fsize_case_in_child(tmp_path)
    assert "File too large" in rec["message"], rec
    _check(rec)
