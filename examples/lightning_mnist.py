"""PyTorch Lightning with the hybrid trainer: mix ``HybridMixin`` in and write ``hybrid_loss``
instead of ``training_step``.

    python examples/lightning_mnist.py [--max-steps 300]

Predicted steps run no backward pass (the mixin uses Lightning's manual optimization); every
batch still counts as one Lightning step. The trainer's figures appear in Lightning's logs as
``hybrid/*`` (here: a CSV logger under lightning_logs/).
"""
from __future__ import annotations

import argparse

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from hybrid_predict_trainer.data import load_mnist5k
from hybrid_predict_trainer.integrations.lightning import HybridMixin


class LitMLP(HybridMixin, L.LightningModule):
    hybrid_config = {"warmup_steps": 20}        # any HybridConfig field

    def __init__(self, lr: float = 2e-3) -> None:
        super().__init__()
        self.lr = lr
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                       torch.nn.Linear(256, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def hybrid_loss(self, batch, batch_idx):    # forward only: no backward, no step
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


def main(max_steps: int = 300) -> LitMLP:
    torch.manual_seed(0)
    x, y = load_mnist5k()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    train = DataLoader(TensorDataset(x[:4000], y[:4000]), batch_size=128, shuffle=True)
    val = DataLoader(TensorDataset(x[4000:], y[4000:]), batch_size=500)
    model = LitMLP()
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1,
                        logger=L.pytorch.loggers.CSVLogger("lightning_logs", name="hybrid"),
                        enable_checkpointing=False, log_every_n_steps=10)
    trainer.fit(model, train, val)
    print(model.hybrid_report)
    return model


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=300)
    main(parser.parse_args().max_steps)
