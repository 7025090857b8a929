"""RSSM-lite: a small GRU ensemble that forecasts updates inside a low-rank subspace.

How it works, and why it stays cheap:
- The last W real updates U (W x P) span the subspace. We take the top-r eigenvectors of the
  small Gram matrix U U^T (W x W) instead of an SVD of U; an update's r coefficients are then
  c = E^T U u / sqrt(lambda), and a coefficient vector maps back to a weight update as a
  *combination of the stored updates*: delta = (E diag(lambda^-1/2) c) @ U. No P x r basis is
  ever materialised, so memory is the W stored updates (W parameter copies).
- Each of M GRUs reads the sequence of [coefficients, log loss, log grad norm, log lr] and
  predicts the next coefficients and the next loss. They are trained for a few Adam iterations
  per segment, warm-started from the previous segment, on the window itself.
- Confidence comes from agreement between members: the spread of their first forecast
  relative to its size.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Forecast, Observation, cosine

_FEATS = 3  # log loss, log grad norm, log lr


class _GRUEnsemble(torch.nn.Module):
    """M independent GRU cells + linear heads, batched over members with einsum."""

    def __init__(self, members: int, inp: int, hidden: int, out: int, gen: torch.Generator):
        super().__init__()
        k = 1.0 / math.sqrt(hidden)

        def u(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter((torch.rand(*shape, generator=gen) * 2 - 1) * k)

        self.w_ih, self.w_hh = u(members, inp, 3 * hidden), u(members, hidden, 3 * hidden)
        self.b_ih, self.b_hh = u(members, 1, 3 * hidden), u(members, 1, 3 * hidden)
        self.w_out, self.b_out = u(members, hidden, out), u(members, 1, out)
        self.hidden = hidden

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # x: (M, 1, inp)  h: (M, 1, H)
        gi = torch.bmm(x, self.w_ih) + self.b_ih
        gh = torch.bmm(h, self.w_hh) + self.b_hh
        ir, iz, inn = gi.chunk(3, -1)
        hr, hz, hn = gh.chunk(3, -1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(inn + r * hn)
        return (1 - z) * n + z * h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return torch.bmm(h, self.w_out) + self.b_out

    def run(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xs: (T, inp) shared by all members -> outputs (M, T, out), last hidden (M, 1, H)."""
        m = self.w_ih.shape[0]
        h = torch.zeros(m, 1, self.hidden)
        outs = []
        for t in range(xs.shape[0]):
            h = self.cell(xs[t].expand(m, 1, -1), h)
            outs.append(self.head(h))
        return torch.cat(outs, 1), h


class RSSMLitePredictor:
    name = "rssm"

    def __init__(self, members: int = 5, rank: int = 4, window: int = 12, hidden: int = 32,
                 train_iters: int = 8, lr: float = 1e-2, seed: int = 0) -> None:
        if rank >= window:
            raise ValueError("rssm_rank must be smaller than rssm_window")
        self.members, self.rank, self.window = members, rank, window
        self.hidden, self.train_iters, self.lr = hidden, train_iters, lr
        gen = torch.Generator().manual_seed(seed)
        self.net = _GRUEnsemble(members, rank + _FEATS, hidden, rank + 1, gen)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.buf: torch.Tensor | None = None        # (window, P) updates, ring buffer
        self.feats: list[list[float]] = []          # chronological scalar features
        self.count = 0
        self._since_fit = 0
        self._agreement = 0.0
        self._weights: torch.Tensor | None = None   # (H, n) combination weights per step
        self._rows: torch.Tensor | None = None      # chronological view of buf used by _weights
        self._pred_loss: list[float] = []
        self.last_fit_loss = float("nan")

    # -- protocol ----------------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        u = obs.update
        if self.buf is None:
            self.buf = torch.zeros((self.window, u.numel()), dtype=u.dtype, device=u.device)
        self.buf[self.count % self.window].copy_(u)
        self.feats = (self.feats + [[math.log(max(obs.loss, 1e-12)),
                                     math.log(max(obs.grad_norm, 1e-12)),
                                     math.log(max(obs.lr, 1e-12))]])[-self.window:]
        self.count += 1
        self._since_fit += 1

    def ready(self) -> bool:
        return self.count >= self.window

    def agreement(self) -> float:
        # The gate asks every step; fitting costs a few GRU training iterations, so the
        # agreement of the last fit is reused and a fit happens only once the predictor first
        # becomes ready (later fits come with each segment's begin_segment).
        if self.ready() and self._weights is None:
            self._fit_and_rollout(horizon=1)
        return self._agreement

    def begin_segment(self, horizon: int) -> None:
        self._fit_and_rollout(horizon)

    def forecast(self, index: int) -> Forecast:
        if self._weights is None or self._rows is None:
            raise RuntimeError("forecast() before begin_segment()")
        i = min(index, self._weights.shape[0] - 1)
        w = self._weights[i].to(self._rows.dtype).to(self._rows.device)
        return Forecast(delta=w @ self._rows, loss=self._pred_loss[i])

    def residual(self, predicted: torch.Tensor, actual: torch.Tensor) -> float:
        return cosine(predicted, actual)

    def memory_copies(self) -> float:
        return float(self.window + 2)  # ring buffer + its chronological copy + one forecast

    # -- fitting -------------------------------------------------------------------------------
    def _subspace(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        assert self.buf is not None
        n = min(self.count, self.window)
        start = self.count - n
        rows = self.buf[[(start + j) % self.window for j in range(n)]]
        gram = (rows.double() @ rows.double().T).cpu()
        evals, evecs = torch.linalg.eigh(gram)              # ascending
        evals, evecs = evals.flip(0)[: self.rank], evecs.flip(1)[:, : self.rank]
        evals = evals.clamp_min(1e-30 + 1e-12 * float(evals.max().clamp_min(0)))
        coeffs = evecs * evals.sqrt()                       # (n, r): rows' coordinates
        return rows, coeffs, evecs / evals.sqrt()           # last: (n, r) coeff -> weights

    def _fit_and_rollout(self, horizon: int) -> None:
        rows, coeffs, to_weights = self._subspace()
        scale = float(coeffs.abs().mean().clamp_min(1e-30))
        c = (coeffs / scale).float()
        f = torch.tensor(self.feats[-c.shape[0]:], dtype=torch.float32)
        f_mu, f_sd = f.mean(0), f.std(0, unbiased=False).clamp_min(1e-3)
        fn = (f - f_mu) / f_sd
        xs = torch.cat([c, fn], 1)                          # (n, r + 3)
        target = torch.cat([c[1:], fn[1:, :1]], 1)          # next coeffs and next loss
        with torch.enable_grad():
            for _ in range(self.train_iters):
                out, _ = self.net.run(xs[:-1])
                loss = torch.nn.functional.mse_loss(out, target.expand_as(out))
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
        self.last_fit_loss = float(loss.detach())
        with torch.no_grad():
            out, h = self.net.run(xs)
            step = out[:, -1:, :]                           # (M, 1, r + 1)
            preds = []
            last_f = fn[-1:].expand(self.members, 1, -1)
            for _ in range(horizon):
                preds.append(step)
                x = torch.cat([step[..., : self.rank], step[..., self.rank:], last_f[..., 1:]], -1)
                h = self.net.cell(x, h)
                step = self.net.head(h)
            p = torch.cat(preds, 1)                         # (M, H, r + 1)
            mean, spread = p.mean(0), p.std(0, unbiased=False)
            rel = float(spread[0, : self.rank].norm() / mean[0, : self.rank].norm().clamp_min(1e-12))
            self._agreement = math.exp(-rel)
            coef = mean[:, : self.rank].double() * scale    # (H, r)
            self._weights = (coef @ to_weights.T).float()   # (H, n)
            self._rows = rows
            loss_n = mean[:, self.rank].double()
            self._pred_loss = [math.exp(float(v) * float(f_sd[0]) + float(f_mu[0])) for v in loss_n]
        self._since_fit = 0

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"config": [self.members, self.rank, self.window, self.hidden, self.train_iters],
                "net": self.net.state_dict(), "opt": self.opt.state_dict(), "buf": self.buf,
                "feats": [list(x) for x in self.feats], "count": self.count,
                "since_fit": self._since_fit, "agreement": self._agreement,
                "weights": self._weights, "pred_loss": list(self._pred_loss)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        cfg = [int(x) for x in state["config"]]
        if cfg != [self.members, self.rank, self.window, self.hidden, self.train_iters]:
            raise ValueError(f"RSSM-lite checkpoint has members/rank/window/hidden/iters {cfg}, "
                             f"this predictor {[self.members, self.rank, self.window, self.hidden, self.train_iters]}")
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.buf = state["buf"].clone() if state["buf"] is not None else None
        self.feats = [list(map(float, x)) for x in state["feats"]]
        self.count, self._since_fit = int(state["count"]), int(state["since_fit"])
        self._agreement = float(state["agreement"])
        self._weights = state["weights"]
        self._pred_loss = [float(x) for x in state["pred_loss"]]
        if self._weights is not None and self.buf is not None:
            n = min(self.count, self.window)
            start = self.count - n
            # rows at the time of the last fit are the current chronological rows only if no
            # observation happened since; otherwise the next begin_segment refits anyway.
            self._rows = self.buf[[(start + j) % self.window for j in range(n)]]
            if self._rows.shape[0] != self._weights.shape[1]:
                self._weights, self._rows = None, None
