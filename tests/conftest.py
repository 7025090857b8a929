"""Shared fixtures: a small slice of real MNIST and tiny models, so tests stay fast."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_small() -> tuple[torch.Tensor, ...]:
    """1,500 real digits: 1,000 train / 500 validation (fixed shuffle)."""
    from hybrid_predict_trainer.data import load_mnist5k
    x, y = load_mnist5k()
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:1500]
    x, y = x[perm], y[perm]
    return x[:1000], y[:1000], x[1000:], y[1000:]
