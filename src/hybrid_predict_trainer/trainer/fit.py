"""Whether a checkpoint fits the trainer it is loaded into, checked before anything is loaded.

Why: a checkpoint written for another model, optimizer or predictor would fail half-way
through loading, or worse, load and train on with state that means something else (another
optimizer's moments, another predictor's window). Each mismatch is named here with its fix,
before the first tensor is copied.
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import CheckpointError


def check_fits(state: dict[str, Any], model: torch.nn.Module, numel: int,
               optimizer: torch.optim.Optimizer, predictor_name: str) -> None:
    """Raise a CheckpointError naming the first thing in ``state`` that does not fit."""
    own, theirs = model.state_dict(), state["model"]
    mismatch = [k for k in own if k not in theirs
                or tuple(theirs[k].shape) != tuple(own[k].shape)]
    extra = [k for k in theirs if k not in own]
    if mismatch or extra:
        k = (mismatch or extra)[0]
        detail = (f"'{k}' has shape {tuple(theirs[k].shape)} in the file, "
                  f"{tuple(own[k].shape)} in the model" if k in theirs and k in own
                  else f"'{k}' is missing in the {'file' if k in own else 'model'}")
        raise CheckpointError(f"checkpoint: written for another model ({detail}); build the "
                              "same architecture before loading")
    tr = state["trainer"]
    # "numel" since the update buffers became optional; older files always hold "prev"
    covered = int(tr["numel"] if "numel" in tr else tr["prev"].numel())
    if covered != numel:
        raise CheckpointError(f"checkpoint: trainer state covers {covered} parameters, this "
                              f"optimizer {numel}; build the optimizer the same way")
    # absent in older files; named here, a mismatch would only surface as a missing key
    theirs_opt, own_opt = state.get("optimizer_class"), type(optimizer).__name__
    if theirs_opt is not None and theirs_opt != own_opt:
        raise CheckpointError(f"checkpoint: written with optimizer {theirs_opt}, this "
                              f"trainer uses {own_opt}; build the same optimizer before "
                              "loading")
    theirs_pred = state["predictor"].get("name")
    if theirs_pred != predictor_name:
        raise CheckpointError(f"checkpoint: written with predictor '{theirs_pred}', this "
                              f"trainer uses '{predictor_name}'; set predictor='{theirs_pred}' "
                              "in HybridConfig (or pass the same predictor object)")
