"""Temporary wrappers around ``torch.nn.functional`` losses, shared by every live monitor.

Why patch: a broadcast inside a loss (prediction (N,) against target (N, 1)) must be caught at
the first call, before any number is wrong. Loss modules such as ``nn.MSELoss`` call
``F.mse_loss`` through the module attribute, so wrapping the functional covers them too. The
wrappers are installed when the first listener registers and removed when the last one leaves
(or is garbage-collected); a wrapper costs one shape comparison per loss call. Code that
imported a loss function by name before the monitor started is covered by listening to
PyTorch's own size warning.
"""
from __future__ import annotations

import functools
import re
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch.nn.functional as F

from ..util import user_stacklevel

# Losses whose (input, target) must have identical shapes.
PAIRED_LOSSES = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
                 "binary_cross_entropy_with_logits", "soft_margin_loss", "poisson_nll_loss",
                 "gaussian_nll_loss", "kl_div")

class Listener(Protocol):
    """What a monitor registers (its loss-input check)."""

    def on_loss(self, fn: str, inp: Any, tgt: Any) -> bool:
        """Every wrapped loss call. True: PyTorch's size warning for the call says nothing new
        (a finding reports it, or the broadcast was declared intended)."""

    def on_torch_warning(self, input_size: str, target_size: str) -> None:
        """PyTorch's own 'target size ... different to the input size' warning."""


# Weak references: a monitor that is dropped without close() must not keep the patch alive.
# Only the current listener (the monitor created or stepped most recently) hears a loss call,
# so a stale monitor of an earlier run never reports the losses of the next one.
_listeners: list[weakref.ref] = []
_originals: dict[str, Callable[..., Any]] = {}
_saved_showwarning: Any = None

_SIZE_WARNING = re.compile(r"target size \(torch\.Size\(\[([^\]]*)\]\)\) that is different "
                           r"to the input size \(torch\.Size\(\[([^\]]*)\]\)\)")


def _current() -> Listener | None:
    while _listeners:
        listener = _listeners[-1]()
        if listener is not None:
            return listener
        _listeners.pop()
    return None


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        listener = _current()
        if listener is None:
            return original(*args, **kwargs)
        inp = args[0] if args else kwargs.get("input")
        tgt = args[1] if len(args) > 1 else kwargs.get("target")
        redundant = listener.on_loss(name, inp, tgt)
        if getattr(inp, "shape", None) == getattr(tgt, "shape", None):
            return original(*args, **kwargs)
        # Shapes differ: PyTorch may warn, and its warning would point at this wrapper. Catch
        # it; drop it if the listener made it redundant, else re-issue it at the user's line.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = original(*args, **kwargs)
        for w in caught:
            if not (redundant and _SIZE_WARNING.search(str(w.message))):
                warnings.warn(w.message, w.category, stacklevel=user_stacklevel())
        return result

    wrapper.__hpt_original__ = original  # type: ignore[attr-defined]
    return wrapper


def _showwarning(message: Any, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: Any = None) -> None:
    if issubclass(category, UserWarning):
        match = _SIZE_WARNING.search(str(message))
        listener = _current() if match else None
        if listener is not None:
            listener.on_torch_warning(match.group(2), match.group(1))
    show = _saved_showwarning or getattr(warnings, "_showwarning_orig", None)
    if show is not None:  # None only if a stale reference outlived every monitor
        show(message, category, filename, lineno, file, line)


def add_listener(listener: Listener) -> None:
    """Register (and make current) a listener; installs the wrappers on first use."""
    global _saved_showwarning
    _prune()
    if not _listeners:
        for name in PAIRED_LOSSES:
            original = getattr(F, name, None)
            if original is not None and not hasattr(original, "__hpt_original__"):
                _originals[name] = original
                setattr(F, name, _wrap(name, original))
        _saved_showwarning = warnings.showwarning
        warnings.showwarning = _showwarning
    _listeners.append(weakref.ref(listener))
    weakref.finalize(listener, _prune)


def touch(listener: Listener) -> None:
    """Make ``listener`` the current one (its monitor just stepped)."""
    if _listeners and _listeners[-1]() is listener:
        return
    for i, ref in enumerate(_listeners):
        if ref() is listener:
            _listeners.append(_listeners.pop(i))
            return


def remove_listener(listener: Listener) -> None:
    """Unregister; the last listener to leave restores the original functions."""
    _listeners[:] = [r for r in _listeners if r() is not None and r() is not listener]
    _prune()


def _prune() -> None:
    global _saved_showwarning
    _listeners[:] = [r for r in _listeners if r() is not None]
    if _listeners:
        return
    for name, original in _originals.items():
        if getattr(getattr(F, name, None), "__hpt_original__", None) is original:
            setattr(F, name, original)
    _originals.clear()
    if warnings.showwarning is _showwarning:  # someone else may have replaced it since
        warnings.showwarning = _saved_showwarning
    _saved_showwarning = None


def listener_count() -> int:
    """Live listeners (monitors with loss checks that are neither closed nor collected)."""
    return sum(r() is not None for r in _listeners)


def is_patched() -> bool:
    """True while any loss function is wrapped (used by tests of ``close()``)."""
    return any(hasattr(getattr(F, n, None), "__hpt_original__") for n in PAIRED_LOSSES) or \
        warnings.showwarning is _showwarning
