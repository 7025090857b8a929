"""Config files and flags: every mistake is one clear line naming the key and the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hybrid_predict_trainer import ConfigError
from hybrid_predict_trainer.cli.app import app
from hybrid_predict_trainer.cli.schema import load_config
from hybrid_predict_trainer.cli.task import RunContext, call_entry, resolve_entry

GOOD = '[run]\nentry = "task.py:build"\nmax_steps = 5\n'
TASK = '''
import torch
from hybrid_predict_trainer.cli import Task
VALUE = 3
def helper():
    pass
def build(width, ctx=None):
    model = torch.nn.Linear(width, 1)
    return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
            "loss": lambda m, b: m(b).pow(2).mean(), "train": [torch.ones(2, width)]}
def bad_return():
    return (1, 2)
'''


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "task.py").write_text(TASK)
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, expected", [
    (GOOD + "epoch = 3\n", "[run]: unknown key 'epoch' (did you mean 'epochs'?); valid keys are: "
                           "checkpoint_every, entry, epochs"),
    (GOOD + "[hybird]\n", "top level: unknown key 'hybird' (did you mean 'hybrid'?); valid keys "
                          "are: args, hybrid, run, sweep"),
    (GOOD + "[hybrid]\nmax_horizn = 4\n", "[hybrid] unknown key 'max_horizn' (did you mean "
                                          "'max_horizon'?)"),
    (GOOD + "[hybrid]\nconfidence_threshold = 2.0\n", "[hybrid] confidence_threshold: Input "
                                                      "should be less than or equal to 1"),
    (GOOD + "[hybrid]\nmetrics_path = 'x.jsonl'\n", "metrics_path is set by hpt"),
    ('[run]\nentry = "task.py:build"\n', "set epochs or max_steps"),
    ('[run]\nmax_steps = 3\n', "[run] entry: required"),
    ('[run]\nentry = "build"\nmax_steps = 3\n', "expected 'module:function'"),
    (GOOD + "seed = 'x'\n", "[run] seed: Input should be a valid integer"),
    (GOOD + "[sweep]\nobjective = 'time_to_target'\n", "target_val_loss: required"),
    (GOOD + "[sweep]\nobjective = 'val_loss'\n[sweep.space]\nlr = [1, 2]\n",
     "space: unknown key 'lr'; searchable keys are: segments, max_horizon"),
    ("[run\n", "not valid TOML"),
    (GOOD + "[sweep]\nobjective = 'val_loss'\n[sweep.space]\nconfidence_threshold = [0.5, 1.5]\n",
     "space.confidence_threshold: 1.5 is not a valid confidence_threshold (Input should "
     "be less than or equal to 1"),
    (GOOD + "[sweep]\nobjective = 'val_loss'\n[sweep.space]\npredictor = ['rssm', 'foo']\n",
     "space.predictor: 'foo' is not a valid predictor"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    msg = str(info.value)
    assert expected in msg and "\n" not in msg and msg.startswith("c.toml: ")


@pytest.mark.parametrize("entry, expected", [
    ("missing.py:build", "file 'missing.py' not found next to the config"),
    ("task.py:nope", "has no attribute 'nope'; functions defined there: bad_return, build, "
                     "helper"),
    ("task.py:VALUE", "is a int, not a function"),
    ("no_such_module_xyz:build", "cannot import module 'no_such_module_xyz'"),
])
def test_entry_point_errors(tmp_path, entry, expected):
    write(tmp_path, GOOD)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        resolve_entry(entry, tmp_path)


def test_entry_is_called_with_args_and_ctx_and_checked(tmp_path):
    write(tmp_path, GOOD)
    ctx = RunContext(0, 1, __import__("torch").device("cpu"), 0, None, tmp_path)
    task = call_entry(resolve_entry("task.py:build", tmp_path), {"width": 4}, ctx)
    assert task.model.in_features == 4
    with pytest.raises(ConfigError, match=r"\[args\]: 'widht' is not a parameter .* takes: "
                                          "width"):
        call_entry(resolve_entry("task.py:build", tmp_path), {"widht": 4}, ctx)
    with pytest.raises(ConfigError, match=r"needs 'width'"):
        call_entry(resolve_entry("task.py:build", tmp_path), {}, ctx)
    with pytest.raises(ConfigError, match="returned tuple"):
        call_entry(resolve_entry("task.py:bad_return", tmp_path), {}, ctx)


def test_cli_reports_errors_and_unknown_flags_list_the_valid_ones(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(app, ["train", str(write(tmp_path, GOOD + "epoch = 3\n"))])
    assert bad.exit_code == 2 and "[run]: unknown key 'epoch'" in bad.output
    flag = runner.invoke(app, ["train", "c.toml", "--epoch", "3"])
    assert flag.exit_code == 2
    assert "No such option: --epoch; valid options:" in flag.output
    assert "--epochs" in flag.output and "--resume" in flag.output
    both = runner.invoke(app, ["train", "c.toml", "--resume", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output
    resume = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert resume.exit_code == 2 and "no state.json" in resume.output
    commands = runner.invoke(app, ["--help"]).output
    assert all(c in commands for c in ("demo", "train", "report", "sweep", "bench"))
