"""Utilities shared by the checks: batched norms, shape and number formatting, call sites.

Why batched norms: reading one norm per parameter with ``.item()`` costs one device sync each;
``torch._foreach_norm`` plus a single stacked read costs one sync for the whole model.
"""
from __future__ import annotations

import math
import os
import statistics
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ..params import dense_values

_TORCH_DIR = os.path.dirname(torch.__file__)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SKIP = (_TORCH_DIR, _PACKAGE_DIR + os.sep, "<frozen", warnings.__file__)


def norms(tensors: Sequence[torch.Tensor]) -> list[float]:
    """L2 norm of each tensor as Python floats, with one sync per device."""
    if not tensors:
        return []
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(tensors):
        by_device.setdefault(t.device, []).append(i)
    out = [0.0] * len(tensors)
    for idx in by_device.values():
        group = [tensors[i] for i in idx]
        try:
            ns = torch._foreach_norm(group)
        except (RuntimeError, TypeError, NotImplementedError):  # sparse or exotic layouts
            ns = [_norm_one(t) for t in group]
        if any(n.dtype != torch.float32 for n in ns):
            ns = [n.float() for n in ns]
        for i, v in zip(idx, torch.stack(ns).tolist()):
            out[i] = v
    return out


def _norm_one(t: torch.Tensor) -> torch.Tensor:
    return dense_values(t).float().norm()   # a sparse tensor: its stored values


def to_float(value: Any) -> float:
    """A scalar tensor or number as a float (detached; one sync for a tensor)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach())
    return float(value)


def floats(values: Iterable[Any]) -> list[float]:
    """Many scalars (tensors or numbers) as floats with at most one sync per device."""
    values = list(values)
    tensors = [(i, v.detach().reshape(())) for i, v in enumerate(values)
               if isinstance(v, torch.Tensor)]
    out = [float(v) if not isinstance(v, torch.Tensor) else 0.0 for v in values]
    if tensors:
        by_device: dict[torch.device, list[tuple[int, torch.Tensor]]] = {}
        for i, t in tensors:
            by_device.setdefault(t.device, []).append((i, t))
        for items in by_device.values():
            vals = torch.stack([t.float() for _, t in items]).tolist()
            for (i, _), v in zip(items, vals):
                out[i] = v
    return out


def shape(t: Any) -> str:
    """'(128, 1)' for a tensor or a torch.Size, '()' for a scalar."""
    dims = tuple(t.shape) if hasattr(t, "shape") else tuple(t)
    return "(" + ", ".join(str(d) for d in dims) + ("," if len(dims) == 1 else "") + ")"


def fmt(x: float) -> str:
    """A number in 4 significant digits, readable in a sentence."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return statistics.median(vals) if vals else float("nan")


def call_site() -> str:
    """'train.py:42': the first frame outside torch and this package (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_SKIP):
            return f"{os.path.basename(path)}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def user_stacklevel() -> int:
    """``stacklevel`` for ``warnings.warn`` so the warning points at the user's line."""
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        path = frame.f_code.co_filename
        if not path.startswith(_SKIP):
            return level
        level += 1
        frame = frame.f_back
    return 2


def named_tensors(value: Any, prefix: str = "outputs") -> list[tuple[str, torch.Tensor]]:
    """Flatten a tensor, a mapping or a sequence of tensors into (name, tensor) pairs."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    if isinstance(value, Mapping):
        return [(f"{prefix}[{k!r}]", v) for k, v in value.items() if isinstance(v, torch.Tensor)]
    if isinstance(value, (list, tuple)):
        return [(f"{prefix}[{i}]", v) for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    return []


def first_tensor(value: Any) -> torch.Tensor | None:
    """The first tensor in a module output (a tensor, or a tuple/list/dict holding tensors)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for v in value:
            t = first_tensor(v)
            if t is not None:
                return t
    return None
