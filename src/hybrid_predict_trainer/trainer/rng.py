"""Random-number state: captured around paired checks, and saved with checkpoints.

Why: a paired check compares two forwards of one batch, and the comparison is clean only when
both see the same dropout masks, so the RNG is captured before the first and restored before
the second. A checkpoint holds every generator a run draws from (torch, CUDA, Python, NumPy) as
plain containers and tensors, so that it loads with ``weights_only`` and a resumed run continues
bit-identically.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np
import torch

#: What :func:`capture_rng` returns: the CPU generator's state and, on CUDA, the device's.
RngState = tuple[torch.Tensor, Any]


def capture_rng(device: torch.device) -> RngState:
    """The generators a forward on ``device`` draws from."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def restore_rng(state: RngState, device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def global_rng_state() -> dict[str, Any]:
    """Every generator of the process, as plain containers and tensors."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": (torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []),
        "python": [int(version), torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached": float(np_state[4])},
    }


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`global_rng_state` (a CUDA state is skipped where no GPU is available)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(_python_state(state["python"]))
    npr = state["numpy"]
    np.random.set_state(("MT19937", npr["keys"].numpy().astype(np.uint32), int(npr["pos"]),
                         int(npr["has_gauss"]), float(npr["cached"])))


def _python_state(plain: Sequence[Any]) -> tuple[Any, ...]:
    version, internal, gauss = plain
    return (int(version), tuple(int(x) for x in internal.tolist()), gauss)
