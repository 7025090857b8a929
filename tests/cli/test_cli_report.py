"""``hpt report``: a self-contained HTML page with embedded PNGs, for a run and a benchmark."""
from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

pytest.importorskip("matplotlib")

from hybrid_predict_trainer.cli.app import app  # noqa: E402
from hybrid_predict_trainer.metrics import JsonlWriter  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _fake_run(folder):
    """A small metrics.jsonl as the trainer writes it: phases, a rollback, evals, a summary."""
    w = JsonlWriter(folder / "metrics.jsonl")
    phases = ["warmup"] * 5 + ["full"] * 3 + ["predict"] * 4 + ["correct"] * 2 + ["full"] * 4
    order = list(range(10)) + ["resume"] + list(range(8, len(phases)))
    for i in order:
        if i == "resume":                   # a crash after step 9, resumed from step 8
            w.write({"type": "resume", "step": 8})
            continue
        ph = phases[i]
        pred = ph == "predict"
        w.write({"type": "step", "step": i, "phase": ph, "loss": 2.0 - 0.05 * i,
                 "predicted": pred, "backward": not pred, "confidence": 0.7 if i >= 7 else None,
                 "accepted": (i != 10) if pred else None, "rolled_back": i == 12,
                 "transition": "step 12: correct -> full: rolled back" if i == 12 else None,
                 "wall_s": 0.01})
    w.write({"type": "eval", "step": 16, "train_time_s": 0.15, "val_loss": 1.3})
    w.close()
    summary = {"steps": 16, "segments": 1, "rollbacks": 1, "status": "finished",
               "config": {"confidence_threshold": 0.6},
               "health": {"findings": [{"code": "loss-broadcast", "severity": "error",
                                        "step": 3, "where": "mse_loss", "observed": "(8, 1)",
                                        "expected": "(8,)", "message": "shapes <differ>",
                                        "suggestion": "reshape", "count": 2}]}}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_run_report_embeds_every_figure_and_the_findings(tmp_path):
    _fake_run(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "hpt-report"
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["backward_saved.png", "confidence.png", "loss_vs_steps.png",
                    "loss_vs_time.png", "timeline.png"]
    assert all((out / p).read_bytes().startswith(PNG) for p in pngs)
    html = (out / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 5
    assert "src=\"http" not in html and "<link" not in html          # self-contained
    assert "loss-broadcast" in html and "shapes &lt;differ&gt;" in html   # escaped
    assert "rolled back" in html and "<td class=\"num\">0.6</td>" in html
    assert "<p class=\"muted\">18 steps;" in html      # steps 8, 9 logged twice, counted once


def test_benchmark_folder_renders_the_comparison(tmp_path):
    runs = [{"role": "eval", "seed": 0, "method": m, "points": [[0, 0.0, 0, 0, 2.3],
            [50, 1.0 * k, 50 - 20 * k, 20 * k, 0.5], [100, 2.0 * k, 100 - 40 * k, 40 * k, 0.4]]}
            for k, m in ((1, "adamw-tuned"), (0.5, "hybrid-continuation"))]
    methods = {m: {"lr": 0.002, "speedup_median": s, "speedup_min": s * 0.9,
                   "speedup_max": s * 1.1, "reached_target": True, "reached_seeds": "1/1",
                   "time_to_target_s": 2.0 / s, "backward_passes": 100 / s,
                   "predicted_fraction": 0.4 if s > 1 else 0.0, "final_val_loss": 0.4,
                   "final_gap_pct": 0.1, "rollbacks": 1, "overhead_pct": None}
               for m, s in (("adamw-tuned", 1.0), ("hybrid-continuation", 1.6))}
    report = {"command": "python -m benchmarks --quick", "machine": {"torch": "2.x"},
              "workloads": {"mnist-mlp": {"description": "MLP on MNIST", "methods": methods,
                                          "runs": runs, "target_median": 0.41},
                            "fashion-cnn": {"skipped": "data not prepared"}}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    result = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0 and "benchmark report" in result.output
    html = (tmp_path / "o" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert "hybrid-continuation" in html and "1.60x [1.44-1.76]" in html
    assert "Skipped: data not prepared" in html


def test_report_of_a_folder_without_results_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "has no metrics.jsonl" in result.output


def _train_mnist(mnist_small, path, steps: int, **settings):
    """A small MLP trained by HybridTrainer on batches of 30 digits, logging to ``path``;
    returns the trainer, closed (at most 33 steps: the 1,000 training digits)."""
    import torch
    import torch.nn.functional as F

    from hybrid_predict_trainer import HybridConfig, HybridTrainer

    xtr, ytr, _, _ = mnist_small
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 10))
    trainer = HybridTrainer(model, torch.optim.AdamW(model.parameters(), lr=2e-3),
                            HybridConfig(metrics_path=str(path), **settings))
    for i in range(steps):
        xb, yb = xtr[i * 30:(i + 1) * 30], ytr[i * 30:(i + 1) * 30]
        trainer.step(lambda: F.cross_entropy(model(xb), yb))
    trainer.close()
    return trainer


def test_report_of_a_trainer_metrics_file(mnist_small, tmp_path):
    from hybrid_predict_trainer.report import build_report

    path = tmp_path / "m.jsonl"
    _train_mnist(mnist_small, path, 30, warmup_steps=5, auto_off=False)
    files = build_report(path, tmp_path / "out")
    html = files.html.read_text()
    assert files.kind == "run" and len(files.pngs) == 5
    assert "30 steps" in html and "warm-up done" in html        # transitions with reasons
    assert "Health monitor findings" in html
    assert "No findings: the monitor saw no problem." in html or 'class="sev-' in html


def test_the_run_timeline_counts_and_marks_the_checked_jumps(mnist_small, tmp_path,
                                                             monkeypatch):
    # With the default settings every step is real: the jumps are what the timeline shows.
    import matplotlib.axes

    from hybrid_predict_trainer.report import figures
    from hybrid_predict_trainer.report.runlog import read_run

    path = tmp_path / "m.jsonl"
    trainer = _train_mnist(mnist_small, path, 33, monitor=False)
    jumps = trainer.summary()["jumps"]
    assert trainer.stats.skipped_nonfinite == 0
    titles, marks = [], []
    real_title, real_plot = matplotlib.axes.Axes.set_title, matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda ax, t, *a, **k: (titles.append(t), real_title(ax, t, *a, **k))[1])
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda ax, *a, **k: (marks.append(a), real_plot(ax, *a, **k))[1])
    figures.timeline(read_run(path), tmp_path / "t.png")
    assert jumps["accepted"] + jumps["rejected"] > 0
    assert titles[-1].endswith(f"{jumps['accepted']} jump{'s' * (jumps['accepted'] != 1)} "
                               f"kept, {jumps['rejected']} undone")
    kept = [a[0] for a in marks if len(a) > 2 and a[2] == "|"]
    assert kept and len(kept[0]) == jumps["accepted"]
