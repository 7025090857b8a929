"""Small helpers shared by tests (imported as a plain module)."""
from __future__ import annotations

import torch


def make_mlp(seed: int = 0, hidden: int = 64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 10))


def batches(x: torch.Tensor, y: torch.Tensor, epochs: int, bs: int = 100, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - bs + 1, bs):
            idx = perm[i:i + bs]
            yield x[idx], y[idx]
