"""What the entry point returns (:class:`Task`) and how ``hpt`` finds and calls it.

Why a named entry point rather than a script: ``hpt`` owns the loop (checkpoints, Ctrl-C,
resume, sweeps), so it needs the pieces, not a finished run. It imports exactly the module
the config names, takes the named attribute and calls it; nothing else in the module runs
except its top-level code.

The entry function receives the ``[args]`` table as keyword arguments, plus ``ctx`` (a
:class:`RunContext`) if it has a parameter of that name.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import torch

from ..errors import ConfigError
from ..predictors import Predictor

Batches = Union[Iterable[Any], Callable[[int], Iterable[Any]]]


@dataclass
class Task:
    """The pieces of a training run.

    Attributes:
        model: the ``nn.Module`` to train (hpt wraps it in DDP under torchrun).
        optimizer: built from ``model.parameters()``.
        loss: ``loss(model, batch) -> scalar tensor`` (forward only: no backward, no step).
            hpt passes the model to call, which is the DDP wrapper under torchrun.
            ``loss(batch)`` is accepted in a single process.
        train: the training batches: a re-iterable (a ``DataLoader``, a list) or a function
            ``train(epoch) -> iterable``. For an exact resume the order of an epoch must
            depend only on the epoch number: hpt reseeds a shuffling ``DataLoader``'s sampler
            from (seed, epoch) itself; a function should seed its own generator from
            ``epoch``.
        validate: ``validate(model) -> float``, the validation loss (lower is better). Runs
            under ``torch.no_grad()`` with the model in eval mode. Needed by ``hpt sweep``.
        scheduler: an LR scheduler stepped once after every training step (saved in
            checkpoints).
        predictor: a custom predictor instead of the one ``[hybrid] predictor`` names.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss: Callable[..., torch.Tensor]
    train: Batches
    validate: Callable[[torch.nn.Module], float] | None = None
    scheduler: Any = None
    predictor: Predictor | None = None


@dataclass(frozen=True)
class RunContext:
    """Where the entry function runs. Use ``device`` for the model and ``rank`` /
    ``world_size`` to shard data yourself when ``[run] shard = "none"``."""

    rank: int
    world_size: int
    device: torch.device
    seed: int
    run_dir: Path | None
    config_dir: Path


def resolve_entry(spec: str, base_dir: Path) -> Callable[..., Any]:
    """Import the module of ``'module:function'`` and return the function (checked callable).

    ``module`` is a file path relative to ``base_dir`` when it ends in ``.py`` or contains a
    path separator; otherwise a module name imported with the current directory first on
    ``sys.path``.
    """
    mod_part, _, attr = spec.rpartition(":")
    if not mod_part or not attr:
        raise ConfigError(f"run.entry: expected 'module:function' or 'file.py:function', got "
                          f"'{spec}'")
    if mod_part.endswith(".py") or "/" in mod_part or os.sep in mod_part:
        module = _import_file((base_dir / mod_part).resolve(), spec)
    else:
        module = _import_name(mod_part, spec)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", None) == module.__name__)
            raise ConfigError(f"run.entry: '{mod_part}' has no attribute '{attr}'; functions "
                              f"defined there: {', '.join(names) or '(none)'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"run.entry: '{spec}' is a {type(obj).__name__}, not a function; "
                          "name a function that returns the task")
    return obj


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"run.entry: file '{path.name}' not found next to the config "
                          f"('{spec}'); file paths are relative to the config file")
    name = f"_hpt_entry_{path.stem}"
    cached = sys.modules.get(name)
    if cached is not None and getattr(cached, "__file__", None) == str(path):
        return cached                       # e.g. the next sweep trial: import once
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)          # the task file may import its neighbours
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"run.entry: cannot load '{path.name}' as Python; name a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def _import_name(name: str, spec: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"run.entry: cannot import module '{name}' ('{spec}'): not in the "
                              "current directory or installed packages; run hpt from the "
                              "folder that contains it, or give a file path like "
                              "'task.py:build' (relative to the config)") from None
        raise


def call_entry(fn: Callable[..., Any], args: dict[str, Any], ctx: RunContext) -> Task:
    """Call the entry function with ``[args]`` (and ``ctx``), and check what it returned."""
    params = inspect.signature(fn).parameters
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = [n for n, p in params.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n != "ctx"]
    unknown = [k for k in args if k not in accepted and not takes_kwargs]
    if unknown:
        raise ConfigError(f"[args]: '{unknown[0]}' is not a parameter of the entry function "
                          f"{fn.__name__}(); it takes: {', '.join(accepted) or '(nothing)'}")
    missing = [n for n, p in params.items() if n != "ctx" and p.default is p.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in args]
    if missing:
        raise ConfigError(f"[args]: the entry function {fn.__name__}() needs '{missing[0]}'; "
                          "add it to the [args] table")
    kwargs = dict(args)
    if "ctx" in params or takes_kwargs:
        kwargs["ctx"] = ctx
    return as_task(fn(**kwargs), fn.__name__)


def as_task(obj: Any, where: str = "entry") -> Task:
    """Accept a :class:`Task` or a dict with its field names; check every field's type."""
    names = [f.name for f in fields(Task)]
    if isinstance(obj, dict):
        unknown = [k for k in obj if k not in names]
        if unknown:
            raise ConfigError(f"{where}(): returned unknown key '{unknown[0]}'; a task has: "
                              f"{', '.join(names)}")
        missing = [k for k in ("model", "optimizer", "loss", "train") if k not in obj]
        if missing:
            raise ConfigError(f"{where}(): returned no '{missing[0]}'; return a Task or a dict "
                              "with model, optimizer, loss, train (validate optional)")
        obj = Task(**obj)
    if not isinstance(obj, Task):
        raise ConfigError(f"{where}(): returned {type(obj).__name__}; return a "
                          "hybrid_predict_trainer.cli.Task or a dict with model, optimizer, "
                          "loss, train")
    if not isinstance(obj.model, torch.nn.Module):
        raise ConfigError(f"{where}(): task.model is {type(obj.model).__name__}, expected a "
                          "torch.nn.Module")
    if not isinstance(obj.optimizer, torch.optim.Optimizer):
        raise ConfigError(f"{where}(): task.optimizer is {type(obj.optimizer).__name__}, "
                          "expected a torch.optim.Optimizer")
    if not callable(obj.loss):
        raise ConfigError(f"{where}(): task.loss must be a function loss(model, batch) -> loss")
    if not (callable(obj.train) or hasattr(obj.train, "__iter__")):
        raise ConfigError(f"{where}(): task.train must be an iterable of batches or a "
                          "function train(epoch) -> iterable")
    if obj.validate is not None and not callable(obj.validate):
        raise ConfigError(f"{where}(): task.validate must be a function validate(model) -> "
                          "float, or None")
    if obj.scheduler is not None and not callable(getattr(obj.scheduler, "step", None)):
        raise ConfigError(f"{where}(): task.scheduler has no step() method; pass a "
                          "torch.optim.lr_scheduler object or None")
    if isinstance(obj.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ConfigError(f"{where}(): task.scheduler is ReduceLROnPlateau, whose step() needs "
                          "a metric; hpt steps the scheduler after every training step with "
                          "none. Use a schedule that needs no metric (e.g. CosineAnnealingLR), "
                          "or set scheduler=None")
    return obj


def loss_arity(loss: Callable[..., Any]) -> int:
    """1 for ``loss(batch)``, 2 for ``loss(model, batch)``."""
    try:
        params = [p for p in inspect.signature(loss).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    except (TypeError, ValueError):
        return 2
    if len(params) not in (1, 2):
        raise ConfigError(f"task.loss: takes {len(params)} arguments; write loss(model, batch) "
                          "(or loss(batch) in a single process)")
    return len(params)
