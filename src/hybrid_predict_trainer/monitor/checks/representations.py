"""``rank-collapse``: a watched layer's activations fall onto a few directions (case E).

Why RankMe: the exponential of the entropy of the normalised singular values is a smooth
effective rank that needs no threshold on singular values. It is computed on centred rows (the
mean direction of uncentred activations swamps the rest early in training, e.g. in an
autoencoder that first learns the mean image) and compared with min(width, rows), the largest
rank the sample could show. Cost: one SVD of at most
``rank_rows`` x width every ``rank_every`` steps; the forward hook exists only for the one
forward pass it samples, so other steps pay nothing.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError
from ..util import first_tensor, fmt
from .base import Check, StepContext

_CONSTANT = 1e-8  # variation below this share of the energy: the rows are one vector
_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm,
                  nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)


def effective_rank(x: torch.Tensor) -> float:
    """RankMe of the centred (rows, width) matrix: exp(entropy of its normalised singular
    values). Centring removes the mean direction, which otherwise dominates early in training;
    activations that do not vary at all (a complete collapse) count as rank 1."""
    x = x.float()
    centred = x - x.mean(0)
    if centred.square().sum() <= _CONSTANT * x.square().sum():
        return 1.0
    s = torch.linalg.svdvals(centred)
    p = s / s.sum().clamp_min(1e-30)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


class RankCollapseCheck(Check):
    """Samples the outputs of ``watch_layers`` every ``rank_every`` steps."""

    name = "rank"
    codes = ("rank-collapse",)
    every = "rank_every"

    def __init__(self) -> None:
        super().__init__()
        self._layers: list[tuple[str, nn.Module]] = []
        self._handles: dict[str, Any] = {}
        self._captured: dict[str, torch.Tensor] = {}
        self._low: dict[str, int] = {}
        self._reads: dict[str, int] = {}
        self._last: dict[str, float] = {}

    def attach(self, monitor: Any) -> None:
        super().attach(monitor)
        self._layers = _resolve(monitor.model, monitor.config.watch_layers or [])
        self._reads = {name: 0 for name, _ in self._layers}

    def _arm(self) -> None:
        for name, module in self._layers:
            if name not in self._handles:
                self._handles[name] = module.register_forward_hook(self._hook(name, module))

    def _hook(self, name: str, module: nn.Module) -> Any:
        rows = self.monitor.config.rank_rows

        def capture(mod: nn.Module, args: Any, output: Any) -> None:
            handle = self._handles.pop(name, None)
            if handle is not None:
                handle.remove()
            t = first_tensor(output)
            if t is None or t.dim() < 2 or not t.is_floating_point():
                return
            t = t.detach()
            if isinstance(module, _CHANNEL_FIRST) and t.dim() > 2:
                t = t.movedim(1, -1)
            t = t.reshape(-1, t.shape[-1])
            stride = max(1, t.shape[0] // rows)
            self._captured[name] = t[::stride][:rows].clone()

        return capture

    def on_step(self, ctx: StepContext) -> None:
        """Every ``rank_every`` steps: evaluate what the last armed forward captured, and arm
        the hooks for the next forward."""
        if self._captured:
            with self.timed():
                for name, x in self._captured.items():
                    self._evaluate(name, x)
            self._captured.clear()
        if self._layers:
            self._arm()

    def _evaluate(self, name: str, x: torch.Tensor) -> None:
        cfg = self.monitor.config
        rows, width = x.shape
        if rows < 2 or width < 2:
            return
        erank = effective_rank(x)
        if not math.isfinite(erank):
            return
        self._reads[name] += 1
        cap = min(rows, width)
        frac = erank / cap
        self._last[name] = frac
        self._low[name] = self._low.get(name, 0) + 1 if frac < cfg.rank_fraction else 0
        if self._low[name] >= cfg.rank_patience:
            self.monitor.emit(
                "rank-collapse", f"layer '{name}'",
                observed=f"effective rank {fmt(erank)} of {cap} ({100 * frac:.1f}%, RankMe "
                         f"over {rows} rows of width {width}) in {self._low[name]} "
                         "consecutive reads",
                expected=f"at least {100 * cfg.rank_fraction:.0f}% of {cap}",
                message=f"the activations of '{name}' collapsed onto a few directions: most "
                        "of the layer's width carries no information about the input.",
                suggestion="raise the weight of a diversity/variance term (VICReg-style) or "
                           "lower the term that pulls representations together.")

    def not_run(self) -> list[str]:
        steps = self.monitor.steps if self.monitor else 0
        return [f"rank-collapse on '{n}': no activations were sampled in {steps} steps "
                f"(first read at step {2 * self.monitor.config.rank_every})"
                for n, reads in self._reads.items() if reads == 0]

    def close(self) -> None:
        for h in self._handles.values():
            h.remove()
        self._handles.clear()
        self._captured.clear()


def _resolve(model: nn.Module, layers: list[Any]) -> list[tuple[str, nn.Module]]:
    """Names or modules -> (name, module); unknown names are a ConfigError listing valid ones."""
    by_name = dict(model.named_modules())
    by_id = {id(m): n for n, m in by_name.items()}
    out = []
    for layer in layers:
        if isinstance(layer, str):
            if layer not in by_name or layer == "":
                valid = [n for n in by_name if n][:20]
                raise ConfigError(f"watch_layers: no module named '{layer}' in the model; "
                                  f"valid names include: {', '.join(valid)}")
            out.append((layer, by_name[layer]))
        elif isinstance(layer, nn.Module):
            if id(layer) not in by_id:
                raise ConfigError(f"watch_layers: {type(layer).__name__} is not a submodule "
                                  "of the watched model")
            out.append((by_id[id(layer)] or type(layer).__name__, layer))
        else:
            raise ConfigError(f"watch_layers: expected module names or modules, got "
                              f"{type(layer).__name__}")
    return out
