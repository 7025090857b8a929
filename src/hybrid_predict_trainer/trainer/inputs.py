"""What the user hands the trainer, checked: the optimizer, the settings, the parameter set.

Why: the trainer's weight copies (slow weights, snapshots, undo buffers) and its NaN checks
cover exactly the parameters it was built with, and its settings only act in some
configurations. A foreign or changed parameter set would train outside those copies, and a
setting that cannot act would be silently ignored; both are named here with their fix.
"""
from __future__ import annotations

import warnings

import torch

from ..config import INERT_REASONS, HybridConfig
from ..errors import ConfigError, HybridWarning

_TESTED_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)

# stacklevel 3 of the warnings below: this function, HybridTrainer.__init__, the user's call


def check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Refuse optimizers that re-evaluate the closure; warn on untested ones."""
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ConfigError("optimizer: LBFGS re-evaluates the closure inside step(); use SGD, "
                          "Adam or AdamW with HybridTrainer")
    if not isinstance(optimizer, _TESTED_OPTIMIZERS):
        warnings.warn(f"optimizer: {type(optimizer).__name__} is untested with HybridTrainer; "
                      "predictors use its observed updates as a black box (SGD, Adam and "
                      "AdamW are tested)", HybridWarning, stacklevel=3)


def warn_inert(config: HybridConfig, own_predictor: bool) -> None:
    """Say which of the user's settings this configuration will never read."""
    inert = config.inert_settings()
    if own_predictor and not config.segments:
        inert["the predictor passed to HybridTrainer"] = "segments=True"
    by_switch: dict[str, list[str]] = {}
    for key, switch in inert.items():
        by_switch.setdefault(switch, []).append(key)
    for switch, keys in by_switch.items():
        what = INERT_REASONS[switch]
        warnings.warn(f"config: {', '.join(keys)}: no effect while {what}; set {switch} "
                      f"or leave {'it' if len(keys) == 1 else 'them'} out", HybridWarning,
                      stacklevel=3)


def owned_params(model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer) -> list[torch.nn.Parameter]:
    """The optimizer's trainable parameters, once each; all of them must be the model's."""
    model_ids = {id(p) for p in model.parameters()}
    opt_params = [p for g in optimizer.param_groups for p in g["params"]]
    foreign = [p for p in opt_params if id(p) not in model_ids]
    if foreign:
        raise ConfigError(f"optimizer: holds {len(foreign)} parameter(s) that are not in the "
                          "model; build the optimizer from this model's parameters, e.g. "
                          "AdamW(model.parameters())")
    seen: set[int] = set()
    params = []
    for p in opt_params:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    if not params:
        raise ConfigError("model: no trainable parameters in the optimizer (all have "
                          "requires_grad=False); unfreeze at least one parameter")
    return params


def trainable_ids(optimizer: torch.optim.Optimizer) -> tuple[int, ...]:
    return tuple(id(p) for g in optimizer.param_groups for p in g["params"] if p.requires_grad)


def check_params_unchanged(owned_ids: tuple[int, ...], optimizer: torch.optim.Optimizer) -> None:
    """A parameter unfrozen or added after the trainer was built would train outside its
    copies and checks, silently. Checked before every step (a few microseconds)."""
    now = trainable_ids(optimizer)
    if now != owned_ids:
        raise ConfigError(
            f"optimizer: its trainable parameters changed since HybridTrainer was built "
            f"({len(owned_ids)} then, {len(now)} now: a parameter was unfrozen, "
            "frozen, or added with add_param_group); the trainer's weight copies and NaN "
            "checks cover only the ones it was built with. Build a new HybridTrainer "
            "after the change (its weights and optimizer state carry over)")
