"""The four benchmark workloads: model, real data, batch order, default lr, budget, eval interval.

Why one small spec per workload: every method must see the same initial weights (built from
``init_seed``) and the same batch sequence (drawn from ``seed``), so both are produced here and
nowhere else. Budgets were chosen so that the tuned AdamW run still clearly improves at its
last step (a target taken from a plateau would make every method look equally fast), and
every ``eval_every`` is a multiple of the Lookahead period (5), so Lookahead is always
evaluated at its synchronised (slow) weights.

Default learning rates are set so that the tuning grid (0.5x, 1x, 2x, 4x default) brackets
the best AdamW lr at the budget (measured: the best grid point is an interior one, the
largest diverges or wobbles), because a baseline tuned at the grid's edge is not tuned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hybrid_predict_trainer.data import (DataUnavailable, load_diabetes_split, load_fashion_mnist,
                                         load_mnist5k, load_shakespeare)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Data:
    """Prepared tensors of one workload, loaded once per benchmark process.

    ``x_val``/``y_val`` is the fixed validation subset: the same rows at every evaluation of
    every method, so differences between curves are never sampling noise of the evaluation.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    meta: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """Everything the harness needs to train and evaluate one task.

    ``per_sample_loss(output, y)`` returns one loss per example (per sequence for the language
    model); its mean is the training loss. Selective-Backprop ranks examples by it.
    """

    name: str
    description: str
    default_lr: float
    steps: int
    eval_every: int
    batch_size: int
    load: Callable[[], Data]
    build_model: Callable[[Data], nn.Module]
    per_sample_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batches: Callable[[Data, int], Iterator[Batch]]
    eval_batch: int = 1024
    quick_steps: int | None = None
    # at least 6, so that a seed-by-seed sign test can tell two methods apart at all (6 of 6
    # gives p 0.03; 5 never go below 0.06); more for the noisier ones: jittery curves,
    # millisecond runs
    seeds: int = 6
    full_batch: bool = False  # every step sees the same batch; the hybrid rows are told so

    def loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch (the closure every method differentiates)."""
        return self.per_sample_loss(output, y).mean()

    def model(self, data: Data, init_seed: int) -> nn.Module:
        """The model with its initial weights fixed by ``init_seed`` (same for all methods)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            return self.build_model(data)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data: Data) -> float:
        """Mean per-example validation loss on the fixed subset, in evaluation mode."""
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(data.x_val), self.eval_batch):
            xb = data.x_val[start:start + self.eval_batch]
            yb = data.y_val[start:start + self.eval_batch]
            losses = self.per_sample_loss(model(xb), yb)
            total += float(losses.sum())
            count += losses.numel()
        model.train(was_training)
        return total / count

    @torch.no_grad()
    def val_relative_se(self, model: nn.Module, data: Data) -> float:
        """Standard error of the validation mean, relative to the mean.

        This is how far the fixed subset's loss may sit from the population loss; since every
        method is scored on the same subset, paired differences are far smaller than this.
        """
        model.eval()
        parts = [self.per_sample_loss(model(data.x_val[s:s + self.eval_batch]),
                                      data.y_val[s:s + self.eval_batch])
                 for s in range(0, len(data.x_val), self.eval_batch)]
        losses = torch.cat(parts).double()
        model.train()
        return float(losses.std() / math.sqrt(losses.numel()) / losses.mean())


def epoch_batches(data: Data, seed: int, batch_size: int) -> Iterator[Batch]:
    """Endless mini-batches: a fresh seeded permutation every epoch, last partial batch dropped."""
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    while True:
        order = torch.randperm(n, generator=gen)
        for start in range(0, n - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            yield data.x_train[idx], data.y_train[idx]


def _cross_entropy(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(output, y, reduction="none")


# --- mnist-mlp -----------------------------------------------------------------------------

def _load_mnist() -> Data:
    x, y = load_mnist5k()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    val, train = order[:1000], order[1000:]
    return Data(x[train], y[train], x[val], y[val], {"train": len(train), "val": len(val)})


def _mnist_model(data: Data) -> nn.Module:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))


MNIST_MLP = Workload(
    name="mnist-mlp",
    description="MLP 784-256-10, batch 128, on 4,000 of the 5,000 MNIST digits (1,000 held out)",
    default_lr=4e-3, steps=200, eval_every=10, batch_size=128,
    load=_load_mnist, build_model=_mnist_model, per_sample_loss=_cross_entropy,
    batches=lambda data, seed: epoch_batches(data, seed, 128), quick_steps=120, seeds=7)


# --- fashion-cnn ---------------------------------------------------------------------------

def _load_fashion() -> Data:
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    # A fixed, class-balanced-in-expectation subset of the official test split.
    val = torch.randperm(len(xt), generator=torch.Generator().manual_seed(1234))[:1000]
    return Data(x, y, xt[val], yt[val], {"train": len(x), "val": len(val)})


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (16, 32 channels, each followed by 2x2 max-pool) and two fc layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


FASHION_CNN = Workload(
    name="fashion-cnn",
    description="CNN (2 conv + 2 fc), batch 128, on Fashion-MNIST (60,000 train; "
                "1,000 fixed test images for validation)",
    default_lr=4e-3, steps=500, eval_every=25, batch_size=128,
    load=_load_fashion, build_model=lambda data: SmallCNN(), per_sample_loss=_cross_entropy,
    batches=lambda data, seed: epoch_batches(data, seed, 128), eval_batch=500,
    seeds=7)   # its curve jitters 2-3% between evaluations (shakespeare-gpt's 0.15%)


# --- shakespeare-gpt -----------------------------------------------------------------------

SEQ_LEN = 128


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention and a 4x GELU MLP."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        shape = (b, t, self.n_heads, d // self.n_heads)
        q, k, v = (z.view(shape).transpose(1, 2) for z in (q, k, v))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharGPT(nn.Module):
    """Character-level GPT: token + learned position embeddings, blocks, untied output head."""

    def __init__(self, vocab: int, d_model: int = 128, n_layers: int = 2, n_heads: int = 4,
                 seq_len: int = SEQ_LEN) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def _load_shakespeare() -> Data:
    corpus = load_shakespeare(val_fraction=0.1)
    # 96 fixed windows spread evenly over the held-out text (12,288 predicted characters).
    n_val = 96
    starts = torch.linspace(0, len(corpus.val) - SEQ_LEN - 2, n_val).long()
    x_val = torch.stack([corpus.val[s:s + SEQ_LEN] for s in starts])
    y_val = torch.stack([corpus.val[s + 1:s + SEQ_LEN + 1] for s in starts])
    train = corpus.train
    return Data(train, train, x_val, y_val,
                {"train_chars": len(train), "val_windows": n_val, "vocab": corpus.vocab_size})


def _sequence_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-character cross-entropy of each sequence (one value per sequence)."""
    flat = F.cross_entropy(output.reshape(-1, output.shape[-1]), y.reshape(-1), reduction="none")
    return flat.view(y.shape).mean(dim=1)


def _window_batches(data: Data, seed: int, batch_size: int = 32) -> Iterator[Batch]:
    gen = torch.Generator().manual_seed(seed)
    text = data.x_train
    offsets = torch.arange(SEQ_LEN)
    while True:
        starts = torch.randint(0, len(text) - SEQ_LEN - 1, (batch_size, 1), generator=gen)
        idx = starts + offsets
        yield text[idx], text[idx + 1]


SHAKESPEARE_GPT = Workload(
    name="shakespeare-gpt",
    description="char transformer (2 layers, d_model 128, 4 heads, T=128, B=32) on 42 "
                "Shakespeare works (last 10% of each held out; 96 fixed validation windows)",
    default_lr=4e-3, steps=120, eval_every=10, batch_size=32,
    load=_load_shakespeare,
    build_model=lambda data: CharGPT(int(data.meta["vocab"])),  # type: ignore[arg-type]
    per_sample_loss=_sequence_loss, batches=_window_batches, eval_batch=48)


# --- tabular-fullbatch ---------------------------------------------------------------------

def _load_tabular() -> Data:
    split = load_diabetes_split(val_fraction=0.2, seed=0)
    return Data(split.x_train, split.y_train, split.x_val, split.y_val,
                {"train": len(split.x_train), "val": len(split.x_val)})


def _mse(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((output - y) ** 2).mean(dim=1)


def _full_batches(data: Data, seed: int) -> Iterator[Batch]:
    while True:
        yield data.x_train, data.y_train


TABULAR_FULLBATCH = Workload(
    name="tabular-fullbatch",
    description="MLP 10-16-1 (tanh), full-batch MSE regression on scikit-learn's diabetes "
                "set (354 train rows, 88 held out), standardised",
    # Short budget: at a tuned lr this net reaches its validation floor (~0.47) within
    # about 60 steps, and a target taken on that plateau is noise; at 40 steps the tuned
    # loss still falls about 1% over the last 20% of the budget.
    default_lr=4e-3, steps=40, eval_every=5, batch_size=354,
    load=_load_tabular,
    build_model=lambda data: nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1)),
    per_sample_loss=_mse, batches=lambda data, seed: _full_batches(data, seed),
    # 21 seeds: a run reaches the target in about 0.02 s, and the timing of a run that short
    # swings a seed's speed-up by +-20%, more than the steps two methods differ by; with 7
    # seeds the medians of two such methods swapped places from one run to the next. The
    # extra seeds cost about a minute.
    seeds=21, full_batch=True)


WORKLOADS: dict[str, Workload] = {w.name: w for w in
                                  (MNIST_MLP, FASHION_CNN, SHAKESPEARE_GPT, TABULAR_FULLBATCH)}


def load_or_skip(workload: Workload) -> tuple[Data | None, str | None]:
    """Load a workload's data, or return the reason it must be skipped (never downloads)."""
    try:
        return workload.load(), None
    except DataUnavailable as exc:
        return None, f"{workload.name} skipped: {exc}"
