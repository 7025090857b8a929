"""Diabetes split: standardised with training statistics only, deterministic per seed."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from hybrid_predict_trainer.data import load_diabetes_split  # noqa: E402


def test_shapes_and_training_statistics() -> None:
    split = load_diabetes_split(val_fraction=0.2, seed=0)
    assert split.x_train.shape == (354, 10) and split.x_val.shape == (88, 10)
    assert split.y_train.shape == (354, 1) and split.y_val.shape == (88, 1)
    assert torch.allclose(split.x_train.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(split.x_train.std(0, unbiased=False), torch.ones(10), atol=1e-4)
    assert abs(float(split.y_train.mean())) < 1e-5
    # Validation rows were not used for the statistics, so their mean is not forced to 0.
    assert abs(float(split.y_val.mean())) > 1e-4


def test_seed_controls_the_split() -> None:
    a, b = load_diabetes_split(seed=1), load_diabetes_split(seed=1)
    c = load_diabetes_split(seed=2)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


def test_bad_fraction_is_refused() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        load_diabetes_split(val_fraction=1.0)
