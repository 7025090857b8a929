"""Adopting the trainer in a plain PyTorch loop: ``hybrid = wrap(model, optimizer)``.

Why a closure and not ``hybrid.backward(loss)``: on a predicted step the trainer must skip
the forward's autograd graph *and* the backward, and on check steps it evaluates the same
batch at two weight points with the same dropout masks. Only a function that computes the
loss lets it decide how often, where and whether with gradients to run it. The loop keeps
its data loading, learning-rate schedule and logging; the three lines
``zero_grad(); loss.backward(); optimizer.step()`` become one ``hybrid.step(...)`` call::

    hybrid = wrap(model, optimizer)
    for x, y in loader:
        result = hybrid.step(lambda: loss_fn(model(x), y))
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch

from ..config import HybridConfig
from ..distributed import Collective, LocalCollective, auto_collective
from ..errors import ConfigError
from ..metrics import MetricsHook
from ..predictors import Predictor
from ..trainer import HybridTrainer


def wrap(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
         config: HybridConfig | dict[str, Any] | None = None, *,
         clip_grad_norm: float | None = None,
         collective: Collective | Literal["auto", "local"] = "auto",
         hooks: Sequence[MetricsHook] = (), predictor: Predictor | None = None,
         **overrides: Any) -> HybridTrainer:
    """Return a :class:`HybridTrainer` for an existing model and optimizer.

    Args:
        model: the module whose parameters ``optimizer`` updates. Under DDP pass the inner
            module (``ddp.module``) and call the DDP wrapper inside the closure, so that
            checkpoints load in one process or many alike.
        optimizer: SGD, Adam or AdamW (others work, with a warning).
        config: a :class:`HybridConfig`, a dict of its fields, or None for the defaults.
        clip_grad_norm: clip the gradient norm to this value before every real optimizer
            step (a step pre-hook on the optimizer, so it also applies inside the trainer).
        collective: "auto" averages decisions over ``torch.distributed`` ranks when a
            process group is running; "local" never does; or pass your own.
        hooks: callables receiving every :class:`~hybrid_predict_trainer.StepResult`.
        predictor: a custom predictor (see :class:`~hybrid_predict_trainer.Predictor`).
        **overrides: individual config fields, e.g. ``warmup_steps=50``.
    """
    cfg = _config(config, overrides)
    if collective == "auto":
        coll: Collective = auto_collective()
    elif collective == "local":
        coll = LocalCollective()
    elif isinstance(collective, str):
        raise ConfigError(f"collective: unknown '{collective}'; use 'auto', 'local' or a "
                          "Collective object")
    else:
        coll = collective
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module   # parameters are shared; checkpoints stay DDP-free
    trainer = HybridTrainer(model, optimizer, cfg, predictor=predictor, collective=coll,
                            hooks=hooks)
    if clip_grad_norm is not None:
        if not clip_grad_norm > 0:
            raise ConfigError(f"clip_grad_norm: must be > 0, got {clip_grad_norm!r}; pass None "
                              "to disable clipping")
        optimizer.register_step_pre_hook(_Clip(list(trainer.flat.params), clip_grad_norm))
    return trainer


class _Clip:
    """Optimizer step pre-hook: clip the gradient norm (must return None for torch)."""

    def __init__(self, params: list[torch.Tensor], max_norm: float) -> None:
        self.params, self.max_norm = params, max_norm

    def __call__(self, _opt: object, _args: object, _kwargs: object) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)


def _config(config: HybridConfig | dict[str, Any] | None, overrides: dict[str, Any]
            ) -> HybridConfig:
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, HybridConfig):
        base = config.model_dump()
    elif isinstance(config, dict):
        base = dict(config)
    else:
        raise ConfigError(f"config: expected HybridConfig, dict or None, got "
                          f"{type(config).__name__}")
    return HybridConfig.from_dict({**base, **overrides})
