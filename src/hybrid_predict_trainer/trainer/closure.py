"""The user's closure: run it, and refuse what it returns before backward or the step sees it.

Why a module of its own: every forward the trainer runs (graded steps, paired checks, probes)
goes through here, and every way a closure can be wrong is named here with its fix, in one
place. A wrong loss caught here costs nothing; caught after backward it has already moved the
optimizer's state.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence, Union

import torch

from ..errors import LossError

ClosureOutput = Union[torch.Tensor, tuple[torch.Tensor, dict[str, Any]]]
Closure = Callable[[], ClosureOutput]


def _any_grad(params: Sequence[torch.Tensor]) -> bool:
    return any(p.grad is not None for p in params)


def call_closure(closure: Closure, params: Sequence[torch.Tensor],
                 optimizer: torch.optim.Optimizer, grad: bool) -> Any:
    """Run ``closure`` with autograd on (``grad``) or off and return what it returned.

    The trainer leaves gradients unset after every step, so this test is only a check: the
    optimizer's ``zero_grad`` (with its profiler scope) runs only when something set them.
    Only this call is the user's work; :func:`checked_loss` is the trainer's.
    """
    if grad and _any_grad(params):
        optimizer.zero_grad(set_to_none=True)
    with torch.set_grad_enabled(grad):
        return closure()


def checked_loss(out: Any, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer,
                 grad: bool) -> tuple[torch.Tensor, dict[str, Any]]:
    """What a closure returned, as ``(loss, components)``, or a LossError naming the fix.

    A gradient present after a graded closure means it ran backward itself."""
    if grad and _any_grad(params):
        optimizer.zero_grad(set_to_none=True)
        raise LossError("closure: it ran backward() itself; HybridTrainer runs backward and "
                        "the optimizer step, so return the loss without calling "
                        "loss.backward() (and without optimizer.step())")
    comps: dict[str, Any] = {}
    if isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict):
        out, comps = out
    if not isinstance(out, torch.Tensor):
        raise LossError(f"closure: returned {type(out).__name__}; return the loss tensor, or "
                        "(loss, {'term': tensor, ...}) for a multi-task loss")
    if out.numel() != 1:
        raise LossError(f"closure: returned a loss of shape {tuple(out.shape)}; reduce it to "
                        "a scalar (e.g. loss.mean()) - a non-scalar loss is often a shape "
                        "broadcast bug such as (N,) against (N, 1)")
    if grad and not out.requires_grad:
        raise LossError("closure: the loss does not require grad (computed under no_grad "
                        "or inference_mode, detached, or the model has no trainable "
                        "parameters in the graph)")
    if out.is_complex():
        raise LossError("closure: returned a complex loss; return a real scalar (e.g. "
                        "loss.abs() or loss.real)")
    for name, value in comps.items():   # checked now: before backward and the step
        check_component(name, value)
    return out, comps


def check_component(name: str, value: Any) -> None:
    """A loss component must be a real scalar: a tensor of one element or a plain number."""
    if torch.is_tensor(value):
        ok = value.numel() == 1 and not value.is_complex()
        shape = f"shape {tuple(value.shape)}"
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        shape = f"type {type(value).__name__}"
    if not ok:
        raise LossError(f"closure: loss component '{name}' has {shape}; components "
                        "must be real scalar tensors or numbers, e.g. "
                        "(loss, {'ce': ce.detach(), 'mse': mse.detach()})")
