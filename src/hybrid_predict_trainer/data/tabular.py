"""scikit-learn's bundled diabetes regression set (442 patients x 10 features), standardised.

Why this source: it ships inside scikit-learn (no ``fetch_*``, which needs the internet), and
at 442 rows a whole training set is one batch, which gives a full-batch workload whose
trajectory is smooth: the setting where predicting steps has the most to gain and where the
trainer's own bookkeeping is largest relative to a step.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch

from .mnist import DataUnavailable


@dataclass(frozen=True)
class TabularSplit:
    """Train/validation tensors, standardised with training statistics only.

    ``x_*`` are float32 (N, 10); ``y_*`` are float32 (N, 1) so that ``nn.MSELoss`` sees
    matching shapes (an (N,)/(N, 1) mismatch silently broadcasts to an N x N loss).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def load_diabetes_split(val_fraction: float = 0.2, seed: int = 0) -> TabularSplit:
    """Shuffle with ``seed``, hold out ``val_fraction`` of the rows, standardise x and y.

    Means and standard deviations come from the training rows only, so the validation loss
    is an honest held-out number; the target is standardised too, so an MSE of 1.0 means
    "no better than predicting the mean".
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a value in (0, 1), got {val_fraction}")
    if importlib.util.find_spec("sklearn") is None:
        raise DataUnavailable("the diabetes set needs scikit-learn: pip install scikit-learn")
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]

    def standardise(a: np.ndarray) -> np.ndarray:
        mean = a[train_idx].mean(axis=0)
        std = a[train_idx].std(axis=0)
        return (a - mean) / np.where(std > 0, std, 1.0)

    xs = standardise(x.astype(np.float64)).astype(np.float32)
    ys = standardise(y.astype(np.float64)[:, None]).astype(np.float32)
    as_t = torch.from_numpy
    return TabularSplit(as_t(xs[train_idx].copy()), as_t(ys[train_idx].copy()),
                        as_t(xs[val_idx].copy()), as_t(ys[val_idx].copy()))
