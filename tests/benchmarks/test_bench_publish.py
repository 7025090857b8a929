"""Publishing a run replaces the generated report but keeps the hand-kept sections below it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import report


def _publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> Path:
    """Publish a run whose report.md is ``new`` over a RESULTS.md holding ``old``."""
    bench = tmp_path / "bench"
    bench.mkdir()
    monkeypatch.setattr(report, "BENCH_DIR", bench)
    (bench / "RESULTS.md").write_text(old, encoding="utf-8")
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"workloads": {}}), encoding="utf-8")
    (run / "report.md").write_text(new, encoding="utf-8")
    (run / "plot.png").write_bytes(b"png")
    report.publish(run)
    return bench


def test_publish_keeps_sections_after_the_marker(tmp_path, monkeypatch):
    bench = _publish(tmp_path, monkeypatch,
                     f"# old run\nstale table\n\n{report.KEEP_MARKER}\n## Fault injection\n"
                     "65 / 65\n", "# new run\n![x](plot.png)\n")
    md = (bench / "RESULTS.md").read_text(encoding="utf-8")
    assert md.startswith("# new run") and "stale table" not in md
    assert "](results/plot.png)" in md                       # links point at the copies
    assert md.index(report.KEEP_MARKER) > md.index("# new run")
    assert md.rstrip().endswith("65 / 65")                     # kept, once
    assert md.count("## Fault injection") == 1
    assert (bench / "results" / "plot.png").read_bytes() == b"png"


def test_publish_without_a_marker_writes_the_run_alone(tmp_path, monkeypatch):
    bench = _publish(tmp_path, monkeypatch, "# old run\n", "# new run\n")
    assert (bench / "RESULTS.md").read_text(encoding="utf-8") == "# new run\n"


@pytest.mark.parametrize("argv, shown", [
    (["--publish", "--out", "/somewhere/run1"], "python -m benchmarks --publish"),
    (["--out=/somewhere/run1", "--workloads", "mnist-mlp"],
     "python -m benchmarks --workloads mnist-mlp"),
    ([], "python -m benchmarks"),
])
def test_the_report_names_the_command_without_the_output_folder(argv, shown):
    from benchmarks.run import reproducible_command
    assert reproducible_command(argv) == shown


def test_tune_extend_takes_a_count_and_refuses_a_negative_one(capsys):
    from benchmarks.run import parse_args
    assert parse_args([]).tune_extend == 0
    assert parse_args(["--tune-extend", "2"]).tune_extend == 2
    for bad in ("-1", "two"):
        with pytest.raises(SystemExit):
            parse_args(["--tune-extend", bad])
        assert "--tune-extend: expected a whole number >= 0" in capsys.readouterr().err
