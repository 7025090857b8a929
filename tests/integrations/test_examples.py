"""The plain-loop examples run as documented (small settings)."""
from __future__ import annotations

import io
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_plain_loop_example_trains_with_three_changed_lines(capsys):
    source = (EXAMPLES / "plain_loop.py").read_text()
    assert sum(f"# changed {i}/3" in source for i in (1, 2, 3)) == 3
    summary = runpy.run_path(str(EXAMPLES / "plain_loop.py"))["main"](epochs=1)
    assert summary["steps"] == 32 and summary["backward_passes"] <= 32
    assert "validation loss" in capsys.readouterr().out


def test_custom_logger_example_writes_one_row_per_step():
    out = io.StringIO()
    stats = runpy.run_path(str(EXAMPLES / "custom_logger.py"))["main"](steps=30, out=out)
    rows = out.getvalue().strip().splitlines()
    assert rows[0].startswith("step,phase,loss") and len(rows) == 31
    assert rows[-1].split(",")[4] == str(stats.backward_saved)
