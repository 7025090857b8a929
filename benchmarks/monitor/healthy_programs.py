"""Healthy training programs on which the monitor must report nothing of severity >= warning.

Each is ``fn(steps, **options) -> Run`` and trains a correct, varied program under ``watch``:
a CNN, recurrent models, a transformer, regression, a multi-task model, a fine-tune with frozen
layers, a GAN with two optimizers, a program that broadcasts a loss on purpose (with the
documented opt-out), gradient accumulation, a manual update loop without an optimizer object, a
full-batch model that converges, and real MNIST. The recall benchmark runs them at full length
with the default options and with every check sampled densely; the tests run a short version.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybrid_predict_trainer.monitor import watch

from .data import batches, breast_cancer, diabetes, digits, mnist, text
from .reproductions import Run

# Every expensive check sampled on (almost) every step: the harshest setting for false alarms.
DENSE: dict[str, Any] = {"grad_every": 1, "outputs_every": 1, "components_every": 1,
                         "update_every": 5, "loss_check_every": 1, "graph_every": 5,
                         "rank_every": 10, "warmup_steps": 10}


@dataclass(frozen=True)
class Healthy:
    name: str
    fn: Callable[..., Run]
    steps: int
    test_steps: int
    options: dict[str, Any] = field(default_factory=dict)

    def run(self, steps: int | None = None, **options: Any) -> Run:
        return self.fn(steps or self.steps, **(dict(self.options) | options))


def _loop(model: nn.Module, opt: torch.optim.Optimizer, data: Any, steps: int,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], **opts: Any) -> Run:
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), data):
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss, outputs=out, targets=yb)
    return Run(mon)


def mnist_mlp(steps: int, **opts: Any) -> Run:
    """784-256-10 MLP on 5,000 real MNIST digits, AdamW, batch 128."""
    torch.manual_seed(0)
    x, y = mnist()
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    return _loop(model, opt, batches(x, y, 128), steps, F.cross_entropy, **opts)


def digits_cnn(steps: int, **opts: Any) -> Run:
    """Two conv layers and a linear head on 8x8 digits, with a hidden layer's rank watched."""
    torch.manual_seed(0)
    x, y = digits()
    model = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 16, 10))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    opts = {"watch_layers": ["1"]} | opts
    return _loop(model, opt, batches(x, y, 64), steps, F.cross_entropy, **opts)


class _RowGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gru = nn.GRU(8, 32, batch_first=True)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x.view(-1, 8, 8))
        return self.head(out[:, -1])


def gru_classifier(steps: int, **opts: Any) -> Run:
    """A GRU reads each digit row by row and classifies it."""
    torch.manual_seed(0)
    x, y = digits()
    model = _RowGRU()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    return _loop(model, opt, batches(x, y, 64), steps, F.cross_entropy, **opts)


def lstm_language_model(steps: int, **opts: Any) -> Run:
    """Character LSTM trained with truncated BPTT; the state is carried and detached."""
    torch.manual_seed(0)
    ids, vocab = text()
    model = nn.ModuleDict({"emb": nn.Embedding(vocab, 24),
                           "lstm": nn.LSTM(24, 48, batch_first=True),
                           "head": nn.Linear(48, vocab)})
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batch, chunk = 8, 32
    lanes = ids[: (len(ids) // batch) * batch].view(batch, -1)
    state = (torch.zeros(1, batch, 48), torch.zeros(1, batch, 48))
    with watch(model, opt, **opts) as mon:
        for step in range(steps):
            j = (step * chunk) % (lanes.shape[1] - chunk - 1)
            xb, yb = lanes[:, j:j + chunk], lanes[:, j + 1:j + chunk + 1]
            out, state = model["lstm"](model["emb"](xb), state)
            logits = model["head"](out)
            loss = F.cross_entropy(logits.reshape(-1, vocab), yb.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            state = tuple(s.detach() for s in state)
            mon.step(loss, outputs=logits, targets=yb)
    return Run(mon)


class _CharTransformer(nn.Module):
    def __init__(self, vocab: int, d: int = 64, length: int = 32) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(length, d))
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(length))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        h = self.emb(idx) + self.pos[:t]
        h = self.blocks(h, mask=self.mask[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def char_transformer(steps: int, **opts: Any) -> Run:
    """A 2-layer causal transformer on characters, AdamW with warm-up and cosine decay."""
    torch.manual_seed(0)
    ids, vocab = text()
    model = _CharTransformer(vocab)
    opt = torch.optim.AdamW(model.parameters(), 3e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps)
                                                                     / max(steps, 1))))
    g = torch.Generator().manual_seed(0)
    with watch(model, opt, **opts) as mon:
        for _ in range(steps):
            starts = torch.randint(0, len(ids) - 33, (16,), generator=g)
            xb = torch.stack([ids[s:s + 32] for s in starts])
            yb = torch.stack([ids[s + 1:s + 33] for s in starts])
            logits = model(xb)
            loss = F.cross_entropy(logits.reshape(-1, vocab), yb.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            sched.step()
            mon.step(loss, outputs=logits, targets=yb)
    return Run(mon)


def regression(steps: int, **opts: Any) -> Run:
    """Diabetes progression from 10 standardised features, MSE on matching (N, 1) shapes."""
    torch.manual_seed(0)
    x, y = diabetes()
    y = ((y - y.mean()) / y.std()).unsqueeze(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    return _loop(model, opt, batches(x, y, 32), steps, F.mse_loss, **opts)


def multitask(steps: int, **opts: Any) -> Run:
    """Digit class and standardised ink count from one trunk, with the loss terms reported."""
    torch.manual_seed(0)
    x, y = digits()
    ink = (x > 0.5).sum(1).float()
    ink = (ink - ink.mean()) / ink.std()
    trunk = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
    model = nn.ModuleDict({"trunk": trunk, "cls": nn.Linear(64, 10), "ink": nn.Linear(64, 1)})
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    with watch(model, opt, **opts) as mon:
        for _, (xb, ib) in zip(range(steps), batches(x, torch.arange(len(x)), 64)):
            h = trunk(xb)
            logits, ink_hat = model["cls"](h), model["ink"](h).squeeze(-1)
            comps = {"classification": F.cross_entropy(logits, y[ib]),
                     "ink": F.mse_loss(ink_hat, ink[ib])}
            loss = comps["classification"] + comps["ink"]
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss, components=comps, outputs={"cls": logits, "ink": ink_hat},
                     targets={"cls": y[ib], "ink": ink[ib]})
    return Run(mon)


def finetune_frozen(steps: int, **opts: Any) -> Run:
    """A backbone frozen with requires_grad=False (BatchNorm in eval mode) and a new head; the
    optimizer is built over all parameters, as many fine-tuning scripts do."""
    torch.manual_seed(0)
    x, y = digits()
    backbone = nn.Sequential(nn.Linear(64, 64), nn.BatchNorm1d(64), nn.ReLU(),
                             nn.Linear(64, 64), nn.ReLU())
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone.eval()
    model = nn.Sequential(backbone, nn.Linear(64, 10))
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    return _loop(model, opt, batches(x, y, 64), steps, F.cross_entropy, **opts)


def gan(steps: int, **opts: Any) -> Run:
    """A GAN on a ring of 8 Gaussians: two networks, two optimizers, non-saturating loss."""
    torch.manual_seed(0)
    g_net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 2))
    d_net = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 64),
                          nn.LeakyReLU(0.2), nn.Linear(64, 1))
    opt_g = torch.optim.Adam(g_net.parameters(), 1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_net.parameters(), 1e-3, betas=(0.5, 0.999))
    angles = torch.arange(8) * (2 * math.pi / 8)
    centres = torch.stack([angles.cos(), angles.sin()], 1) * 2
    gen = torch.Generator().manual_seed(0)
    ones, zeros = torch.ones(128, 1), torch.zeros(128, 1)
    model = nn.ModuleDict({"G": g_net, "D": d_net})
    with watch(model, [opt_d, opt_g], **opts) as mon:
        for _ in range(steps):
            real = centres[torch.randint(0, 8, (128,), generator=gen)] + 0.05 * torch.randn(
                128, 2, generator=gen)
            fake = g_net(torch.randn(128, 8, generator=gen))
            opt_d.zero_grad()
            loss_d = (F.binary_cross_entropy_with_logits(d_net(real), ones)
                      + F.binary_cross_entropy_with_logits(d_net(fake.detach()), zeros))
            loss_d.backward()
            opt_d.step()
            opt_g.zero_grad()
            loss_g = F.binary_cross_entropy_with_logits(d_net(fake), ones)
            loss_g.backward()          # also adds to D's gradients; opt_d.zero_grad() resets them
            opt_g.step()
            mon.step(loss_d + loss_g, outputs=fake)
    return Run(mon)


def broadcast_on_purpose(steps: int, **opts: Any) -> Run:
    """Deep SVDD: pull every embedding (N, D) towards one centre (D,); the broadcast in the
    loss is intended and declared with allow_broadcast=True."""
    torch.manual_seed(0)
    x, y = digits()
    x = x[y == 0]
    model = nn.Sequential(nn.Linear(64, 64, bias=False), nn.ReLU(), nn.Linear(64, 16, bias=False))
    with torch.no_grad():
        centre = model(x).mean(0)
    opt = torch.optim.Adam(model.parameters(), 1e-3, weight_decay=1e-5)
    opts = {"allow_broadcast": True} | opts
    with watch(model, opt, **opts) as mon:
        for _, (xb, _) in zip(range(steps), batches(x, x, 32)):
            loss = F.mse_loss(model(xb), centre)      # (32, 16) vs (16,)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    return Run(mon)


def gradient_accumulation(steps: int, **opts: Any) -> Run:
    """Four micro-batches per optimizer step; the monitor sees every micro-batch."""
    torch.manual_seed(0)
    x, y = digits()
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9)
    with watch(model, opt, **opts) as mon:
        for i, (xb, yb) in zip(range(steps), batches(x, y, 16)):
            out = model(xb)
            loss = F.cross_entropy(out, yb) / 4
            loss.backward()
            if i % 4 == 3:
                opt.step()
                opt.zero_grad()
            mon.step(loss, outputs=out, targets=yb)
    return Run(mon)


def manual_updates(steps: int, **opts: Any) -> Run:
    """No optimizer object: plain SGD written by hand, gradients reset every 2 steps on
    purpose (declared with accumulation_steps=2)."""
    torch.manual_seed(0)
    x, y = breast_cancer()
    model = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 1))
    opts = {"accumulation_steps": 2} | opts
    with watch(model, **opts) as mon:
        for i, (xb, yb) in zip(range(steps), batches(x, y, 32)):
            out = model(xb).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(out, yb)
            loss.backward()
            mon.step(loss, outputs=torch.sigmoid(out), targets=yb)
            if i % 2 == 1:
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.05 * p.grad
                model.zero_grad()
    return Run(mon)


def full_batch_convergence(steps: int, **opts: Any) -> Run:
    """Full-batch logistic regression that converges: its gradients shrink a hundredfold."""
    torch.manual_seed(0)
    x, y = breast_cancer()
    model = nn.Linear(30, 1)
    opt = torch.optim.Adam(model.parameters(), 0.05)
    with watch(model, opt, **opts) as mon:
        for _ in range(steps):
            out = model(x).squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(out, y)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss, outputs=torch.sigmoid(out), targets=y)
    return Run(mon)


def autoencoder(steps: int, **opts: Any) -> Run:
    """MNIST autoencoder with a 32-wide code (rank watched) and a sigmoid/BCE reconstruction."""
    torch.manual_seed(0)
    x, _ = mnist()
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 32), nn.ReLU(),
                          nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 784))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    opts = {"watch_layers": ["2"]} | opts

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(out, target)

    return _loop(model, opt, batches(x, x, 64), steps, loss_fn, **opts)


HEALTHY: list[Healthy] = [
    Healthy("mnist-mlp", mnist_mlp, 300, 60),
    Healthy("digits-cnn", digits_cnn, 300, 40),
    Healthy("gru-classifier", gru_classifier, 300, 40),
    Healthy("lstm-language-model", lstm_language_model, 300, 40),
    Healthy("char-transformer", char_transformer, 200, 25),
    Healthy("regression", regression, 300, 60),
    Healthy("multitask", multitask, 300, 60),
    Healthy("finetune-frozen", finetune_frozen, 300, 60),
    Healthy("gan", gan, 400, 60),
    Healthy("broadcast-on-purpose", broadcast_on_purpose, 300, 60),
    Healthy("gradient-accumulation", gradient_accumulation, 300, 60),
    Healthy("manual-updates", manual_updates, 300, 60),
    Healthy("full-batch-convergence", full_batch_convergence, 400, 60),
    Healthy("autoencoder", autoencoder, 300, 40),
]
