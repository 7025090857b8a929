"""Small real data sets for the monitor's reproduction and healthy programs, loaded once.

Everything here works offline: scikit-learn's bundled digits/diabetes/breast-cancer tables, the
5,000 MNIST digits of ``hybrid_predict_trainer.data``, and the text of a standard-library
module as a character corpus.
"""
from __future__ import annotations

import functools
import inspect

import torch


@functools.lru_cache(maxsize=None)
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """1,797 8x8 digits: x float (N, 64) in [0, 1], y int64 (N,)."""
    from sklearn.datasets import load_digits
    d = load_digits()
    return (torch.tensor(d.data, dtype=torch.float32) / 16.0,
            torch.tensor(d.target, dtype=torch.int64))


@functools.lru_cache(maxsize=None)
def diabetes() -> tuple[torch.Tensor, torch.Tensor]:
    """442 patients: x float (N, 10) standardised, y float (N,) disease progression (raw)."""
    from sklearn.datasets import load_diabetes
    d = load_diabetes()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    return x, torch.tensor(d.target, dtype=torch.float32)


@functools.lru_cache(maxsize=None)
def breast_cancer() -> tuple[torch.Tensor, torch.Tensor]:
    """569 tumours: x float (N, 30) standardised, y float (N,) in {0, 1}."""
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    return x, torch.tensor(d.target, dtype=torch.float32)


@functools.lru_cache(maxsize=None)
def mnist() -> tuple[torch.Tensor, torch.Tensor]:
    """5,000 real MNIST digits (x float (N, 784) in [0, 1], y int64)."""
    from hybrid_predict_trainer.data import load_mnist5k
    return load_mnist5k()


@functools.lru_cache(maxsize=None)
def text() -> tuple[torch.Tensor, int]:
    """A character corpus (the source of the ``json`` package): token ids and vocab size."""
    import json.decoder
    import json.encoder
    src = inspect.getsource(json.encoder) + inspect.getsource(json.decoder)
    vocab = sorted(set(src))
    index = {c: i for i, c in enumerate(vocab)}
    return torch.tensor([index[c] for c in src], dtype=torch.int64), len(vocab)


def batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int = 0):
    """Endless shuffled mini-batches with a fixed order."""
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - batch + 1, batch):
            idx = perm[i:i + batch]
            yield x[idx], y[idx]
