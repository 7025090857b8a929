"""Fashion-MNIST loader: the IDX parser on synthetic files, and the real files when installed."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from hybrid_predict_trainer.data import DataUnavailable, fashion_available, load_fashion_mnist
from hybrid_predict_trainer.data.fashion import read_idx


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def _fake_set(root: Path, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    for split in ("train", "t10k"):
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return images, labels


def test_parses_synthetic_idx_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _fake_set(tmp_path)
    monkeypatch.setenv("HPT_FASHION_DIR", str(tmp_path))
    x, y = load_fashion_mnist("test")
    assert x.shape == (6, 1, 28, 28) and str(x.dtype) == "torch.float32"
    assert np.allclose(x[:, 0].numpy() * 255.0, images, atol=1e-4)
    assert y.tolist() == labels.astype(int).tolist()


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(DataUnavailable, match="truncated"):
        read_idx(path)


def test_missing_files_name_the_install_command(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPT_FASHION_DIR", str(tmp_path / "nowhere"))
    assert not fashion_available()
    with pytest.raises(DataUnavailable, match="apt-get install -y dataset-fashion-mnist"):
        load_fashion_mnist()


def test_bad_split_is_refused() -> None:
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("validation")


@pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist not installed")
def test_real_test_split() -> None:
    x, y = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    # The official test split is balanced: 1,000 images per class.
    assert np.bincount(y.numpy(), minlength=10).tolist() == [1000] * 10
