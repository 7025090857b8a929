"""Make the repository's ``benchmarks.faults`` package (the fault campaign these tests run in
reduced form) importable, and share one clean reference run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def fault_workload():
    from benchmarks.faults.workload import Workload
    return Workload(steps=150)


@pytest.fixture(scope="session")
def clean_run(fault_workload):
    """The workload trained without faults (the reference every numeric fault is compared to)."""
    from benchmarks.faults.workload import train
    run = train(fault_workload)
    assert run.error is None and run.trainer.stats.predicted_steps > 0
    return run
