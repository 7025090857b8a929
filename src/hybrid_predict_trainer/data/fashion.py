"""Fashion-MNIST (60,000 train / 10,000 test images) from the Debian package.

Why this source: ``apt-get install -y dataset-fashion-mnist`` ships the original IDX ``.gz``
files (MIT licence), so a benchmark can use a real, harder-than-MNIST image set without
downloading anything at run time. The files are parsed here directly (the IDX format is a
16-byte header plus raw bytes), so no torchvision is needed; there is no CPU build of it.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from .mnist import DataUnavailable

#: Where the Debian package puts the files (``dpkg -L dataset-fashion-mnist``).
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: Set this to a folder holding the four IDX ``.gz`` files to use another copy.
ENV_DIR = "HPT_FASHION_DIR"

INSTALL_HINT = ("Fashion-MNIST needs the Debian package: "
                "apt-get update && apt-get install -y dataset-fashion-mnist "
                f"(or set {ENV_DIR} to a folder with the four IDX .gz files)")

_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: Class names in label order, for reports.
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def fashion_dir() -> Path:
    """The folder the loader reads: ``$HPT_FASHION_DIR`` if set, else the Debian location."""
    env = os.environ.get(ENV_DIR)
    return Path(env).expanduser() if env else DEBIAN_DIR


def fashion_available() -> bool:
    """True when all four IDX files are present, so callers can skip with a message instead."""
    root = fashion_dir()
    return all((root / name).is_file() for pair in _FILES.values() for name in pair)


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzip-compressed IDX file into a uint8 array of the shape its header gives.

    Only the unsigned-byte type (0x08) occurs in (Fashion-)MNIST; anything else is refused so
    that a wrong file fails loudly rather than producing garbage pixels.
    """
    with gzip.open(path, "rb") as fh:
        header = fh.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0:
            raise DataUnavailable(f"{path.name}: not an IDX file (bad magic {header!r})")
        dtype_code, ndim = header[2], header[3]
        if dtype_code != 0x08:
            raise DataUnavailable(f"{path.name}: IDX type 0x{dtype_code:02x} unsupported "
                                  "(expected 0x08, unsigned byte)")
        dims = struct.unpack(f">{ndim}I", fh.read(4 * ndim))
        data = fh.read()
    expected = int(np.prod(dims)) if dims else 0
    if len(data) != expected:
        raise DataUnavailable(f"{path.name}: truncated, header says {expected} bytes of data, "
                              f"found {len(data)}")
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(x, y)`` for ``split`` in {"train", "test"}.

    ``x`` is float32 (N, 1, 28, 28) scaled to [0, 1] (channel-first, ready for ``nn.Conv2d``);
    ``y`` is int64 (N,). Raises :class:`DataUnavailable` naming the install command if the
    package is absent.
    """
    if split not in _FILES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    if not fashion_available():
        raise DataUnavailable(f"{INSTALL_HINT}; looked in {fashion_dir()}")
    root = fashion_dir()
    img_name, lbl_name = _FILES[split]
    images = read_idx(root / img_name)
    labels = read_idx(root / lbl_name)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataUnavailable(f"{img_name}/{lbl_name}: shapes {images.shape} and "
                              f"{labels.shape} do not pair up")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y
