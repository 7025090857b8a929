"""The two benchmark commands run and write their JSON and Markdown reports (tiny settings)."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.monitor import overhead, recall


def test_overhead_command_writes_reports(tmp_path: Path) -> None:
    report = overhead.main(["--out", str(tmp_path), "--rounds", "2", "--block", "5",
                            "--warm-blocks", "1", "--workloads", "mlp"])
    (res,) = report["results"]
    assert res["plain_ms"] > 0 and res["monitor_ms"] > 0
    assert len(res["plain_blocks_ms"]) == 2 and res["findings"] == 0
    assert json.loads((tmp_path / "overhead.json").read_text())["results"][0]["workload"] == "mlp"
    assert "| MLP 784-256-10" in (tmp_path / "overhead.md").read_text()


def test_recall_command_writes_reports(tmp_path: Path) -> None:
    result = recall.main(["--out", str(tmp_path), "--quick", "--only", "zero-grad"])
    assert result["summary"]["default"]["programs_detected"] == "1/1"
    assert result["summary"]["dense"]["twins_silent"] == "1/1"
    md = (tmp_path / "recall.md").read_text()
    assert "| missing-zero-grad | zero_grad() never called |" in md
    assert json.loads((tmp_path / "recall.json").read_text())["summary"] == result["summary"]
