"""Adopting the hybrid trainer in a plain PyTorch loop: three changed lines (marked 1/3..3/3).

    python examples/plain_loop.py [--epochs 3]

The loop before (plain AdamW):

    for x, y in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

and after: ``wrap`` once, then one ``hybrid.step`` call per batch that receives the loss as a
function, so that predicted steps can skip the forward's graph and the backward entirely.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from hybrid_predict_trainer.data import load_mnist5k
from hybrid_predict_trainer.integrations import wrap          # changed 1/3


def main(epochs: int = 3) -> dict:
    torch.manual_seed(0)
    x, y = load_mnist5k()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    loader = DataLoader(TensorDataset(x[:4000], y[:4000]), batch_size=128, shuffle=True)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)

    hybrid = wrap(model, optimizer)                               # changed 2/3
    for _ in range(epochs):
        for xb, yb in loader:
            result = hybrid.step(lambda: F.cross_entropy(model(xb), yb))  # changed 3/3
            if result.transition:                                 # optional: why it moved
                print(result.transition)
    hybrid.close()                # optional: flush the metrics log, detach the monitor
    summary = hybrid.summary()
    with torch.no_grad():
        val = float(F.cross_entropy(model(x[4000:]), y[4000:]))
    print(f"{summary['steps']} steps, {summary['backward_passes']} backward passes, "
          f"{summary['predicted_steps']} predicted; validation loss {val:.4f}")
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    main(parser.parse_args().epochs)
