"""One small, real-ish training program per finding code that triggers it, and its fixed twin.

Each program is ``fn(fixed, steps, **options) -> Run``: it trains under ``watch(...)`` with the
given monitor options and returns the closed monitor (and the error the program died of, if it
died). ``fixed=False`` contains the bug described in docs/monitor.md; ``fixed=True`` is the same
program with the bug fixed, which must produce no finding of severity warning or worse. The
tests in tests/monitor run them with few steps; ``python -m benchmarks.monitor.recall`` runs
them at full length.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hybrid_predict_trainer.monitor import HealthMonitor, watch

from .data import batches, breast_cancer, diabetes, digits, text


@dataclass
class Run:
    """What a program left behind: the closed monitor and the error it died of, if any."""

    monitor: HealthMonitor
    error: BaseException | None = None


@dataclass(frozen=True)
class Reproduction:
    """A program that must trigger ``code`` (and whose fixed twin must stay silent)."""

    code: str
    name: str
    fn: Callable[..., Run]
    steps: int
    test_steps: int
    options: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None

    def run(self, fixed: bool, steps: int | None = None, **options: Any) -> Run:
        kwargs = dict(self.options) | options
        if self.variant is not None:
            kwargs["variant"] = self.variant
        return self.fn(fixed, steps or self.steps, **kwargs)


def _mlp(n_in: int, width: int, n_out: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), act(), nn.Linear(width, width), act(),
                         nn.Linear(width, n_out))


# ---------------------------------------------------------------------- loss-broadcast (G)
def loss_broadcast(fixed: bool, steps: int, variant: str = "functional", **opts: Any) -> Run:
    """Regression whose head returns (N,) after squeeze while the target is (N, 1)."""
    torch.manual_seed(0)
    x, y = diabetes()
    y = (y - y.mean()) / y.std()
    model = _mlp(10, 32, 1)
    opt = torch.optim.AdamW(model.parameters(), 1e-2)
    crit = {"module": nn.MSELoss(), "l1": nn.L1Loss(), "huber": nn.HuberLoss()}.get(variant)
    from torch.nn.functional import mse_loss as imported_mse  # bound before watch() patches
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            target = yb.unsqueeze(1)             # (N, 1)
            pred = model(xb).squeeze(-1)         # (N,)
            if fixed:
                pred = pred.unsqueeze(1)
            if variant == "imported":
                loss = imported_mse(pred, target)
            elif crit is not None:
                loss = crit(pred, target)
            else:
                loss = F.mse_loss(pred, target)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss, outputs=pred, targets=target)
    return Run(mon)


# ---------------------------------------------------------------------- loss-on-normalized (C)
def loss_on_normalized(fixed: bool, steps: int, **opts: Any) -> Run:
    """Regress context vectors with mse(normalize(a), normalize(b)): only directions match."""
    torch.manual_seed(0)
    x, _ = digits()
    proj = torch.randn(64, 16) * 0.5                 # raw target vectors = a fixed projection
    model = _mlp(64, 64, 16)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with watch(model, opt, **opts) as mon:
        for _, (xb, _) in zip(range(steps), batches(x, x, 64)):
            a, b = model(xb), xb @ proj
            loss = (F.mse_loss(a, b) if fixed else
                    F.mse_loss(F.normalize(a, dim=-1), F.normalize(b, dim=-1)))
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    return Run(mon)


# ---------------------------------------------------------------------- loss-term-dominates (F)
class _MultiTask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.cls = nn.Linear(32, 10)
        self.span = nn.Linear(32, 1)
        self.count = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.cls(h), self.span(h).squeeze(-1), self.count(h).squeeze(-1)


def loss_term_dominates(fixed: bool, steps: int, **opts: Any) -> Run:
    """Three tasks; the 'countdown' target is left on its raw scale (clipped to +-20) and the
    whole gradient is clipped to norm 1, so that one term takes the entire clipping budget."""
    torch.manual_seed(0)
    x, y = digits()
    span_all = (x[:, 27] + x[:, 28] > 0.5).float()       # 'span': the centre pixels are inked
    count_all = (x > 0.5).sum(1).float()                  # 'countdown': inked pixels
    noise = torch.Generator().manual_seed(1)
    model = _MultiTask()
    opt = torch.optim.SGD(model.parameters(), 0.05, momentum=0.9)
    with watch(model, opt, **opts) as mon:
        for _, (xb, ib) in zip(range(steps), batches(x, torch.arange(len(x)), 64)):
            yb, sb, cb = y[ib], span_all[ib], count_all[ib]
            if fixed:
                ct = (cb - count_all.mean()) / count_all.std()
            else:
                ct = (cb - count_all.mean() + 20 * torch.randn(len(cb), generator=noise))
                ct = ct.clamp(-20, 20)
            lc, ls, lk = model(xb)
            comps = {"classification": F.cross_entropy(lc, yb),
                     "span": F.binary_cross_entropy_with_logits(ls, sb),
                     "countdown": F.mse_loss(lk, ct)}
            loss = sum(comps.values())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            mon.step(loss, components=comps, outputs={"span": torch.sigmoid(ls)},
                     targets={"span": sb})
    return Run(mon)


# ---------------------------------------------------------------------- output-collapse (F)
def output_collapse(fixed: bool, steps: int, variant: str = "binary", **opts: Any) -> Run:
    """'binary': a tumour classifier with weight_decay=30 (meant 3e-2): the weights shrink to 0
    and every probability converges to one constant. 'classes': a digit classifier whose
    StepLR uses gamma=10 (meant 0.1): the learning rate jumps, the ReLUs die and one class is
    predicted for everything."""
    torch.manual_seed(0)
    if variant == "binary":
        x, y = breast_cancer()
        model = _mlp(30, 32, 1)
        opt = torch.optim.AdamW(model.parameters(), 1e-2, weight_decay=3e-2 if fixed else 30.0)
        sched = None
    else:
        x, y = digits()
        model = _mlp(64, 64, 10)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        sched = torch.optim.lr_scheduler.StepLR(opt, 30, gamma=0.1 if fixed else 10.0)
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            out = model(xb)
            if variant == "binary":
                out = out.squeeze(-1)
                loss = F.binary_cross_entropy_with_logits(out, yb)
                shown = torch.sigmoid(out)
            else:
                loss = F.cross_entropy(out, yb)
                shown = out
            loss.backward()
            opt.step()
            opt.zero_grad()
            if sched is not None:
                sched.step()
            mon.step(loss, outputs=shown, targets=yb)
    return Run(mon)


# ---------------------------------------------------------------------- rank-collapse (E)
def rank_collapse(fixed: bool, steps: int, **opts: Any) -> Run:
    """Self-supervised encoder: 99% invariance + 1% variance collapses the representation;
    the fix uses the published VICReg weighting (25 / 25 / 1)."""
    torch.manual_seed(0)
    x, _ = digits()
    model = nn.ModuleDict({"encoder": nn.Sequential(nn.Linear(64, 128), nn.ReLU(),
                                                    nn.Linear(128, 64))})
    enc = model["encoder"]
    w_inv, w_var, w_cov = (25.0, 25.0, 1.0) if fixed else (0.99, 0.01, 0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    opts = {"watch_layers": ["encoder"]} | opts
    with watch(model, opt, **opts) as mon:
        for _, (xb, _) in zip(range(steps), batches(x, x, 128)):
            z1 = enc(xb + 0.1 * torch.randn_like(xb))
            z2 = enc(xb + 0.1 * torch.randn_like(xb))
            comps = {"invariance": w_inv * F.mse_loss(z1, z2),
                     "variance": w_var * (_hinge_std(z1) + _hinge_std(z2)),
                     "covariance": w_cov * (_off_diag(z1) + _off_diag(z2))}
            loss = sum(comps.values())
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    return Run(mon)


def _hinge_std(z: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()


def _off_diag(z: torch.Tensor) -> torch.Tensor:
    z = z - z.mean(0)
    c = (z.T @ z) / (z.shape[0] - 1)
    return (c - torch.diag(torch.diag(c))).pow(2).sum() / z.shape[1]


# ---------------------------------------------------------------------- stale-statistic (A)
class _LossTracker:
    """The fast/slow loss EMAs a predictive trainer gates on."""

    def __init__(self, update_emas: bool) -> None:
        self.update_emas = update_emas
        self.fast = 0.0
        self.slow = 0.0
        self.history: list[float] = []

    def update(self, loss: float) -> None:
        self.history.append(loss)
        if self.update_emas:                 # the bug: this branch was missing
            self.fast += 0.1 * (loss - self.fast)
            self.slow += 0.02 * (loss - self.slow)


def stale_statistic(fixed: bool, steps: int, **opts: Any) -> Run:
    """The loss history is updated every step, the EMA the gate reads never is."""
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp(64, 64, 10)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    tracker = _LossTracker(update_emas=fixed)
    with watch(model, opt, **opts) as mon:
        mon.track("loss_ema_fast", lambda: tracker.fast)
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            tracker.update(loss.item())
            mon.step(loss)
    return Run(mon)


# ---------------------------------------------------------------------- unreachable-threshold (B)
def unreachable_threshold(fixed: bool, steps: int, **opts: Any) -> Run:
    """A confidence gate (0.5 agreement + 0.3 accuracy + 0.2 stability) of a freshly
    initialised 5-member ensemble, with threshold 0.90; the fix calibrates it to 0.50."""
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp(64, 64, 10)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    members = [nn.Linear(8, 1) for _ in range(5)]          # predictors of the next loss
    weights = {"agreement": 0.5, "accuracy": 0.3, "stability": 0.2}
    tracker = _LossTracker(update_emas=True)

    def confidence() -> tuple[float, dict[str, float]]:
        recent = tracker.history[-8:]
        hist = torch.tensor([recent[0]] * (8 - len(recent)) + recent)
        with torch.no_grad():
            preds = torch.cat([m(hist) for m in members])
        agreement = float(1 - preds.std() / (preds.mean().abs() + preds.std()))
        drops = [b < a for a, b in zip(tracker.history[-11:-1], tracker.history[-10:])]
        accuracy = sum(drops) / len(drops) if drops else 0.5
        stability = max(0.5, 1 - abs(tracker.fast - tracker.slow) / max(tracker.slow, 1e-8))
        parts = {"agreement": agreement, "accuracy": accuracy, "stability": stability}
        contrib = {k: weights[k] * v for k, v in parts.items()}
        return sum(contrib.values()), contrib

    with watch(model, opt, **opts) as mon:
        mon.gate("predict", confidence, 0.50 if fixed else 0.90, weights=weights)
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            tracker.update(loss.item())
            mon.step(loss)
    return Run(mon)


# ---------------------------------------------------------------------- graph-across-steps (D)
def graph_across_steps(fixed: bool, steps: int, variant: str = "error", **opts: Any) -> Run:
    """'error': a truncated-BPTT character model carries its GRU state between chunks without
    detach(); backward fails at step 2. 'retain': a classifier conditions on a running context
    (an EMA of the batch embeddings) carried without detach(), with retain_graph=True added to
    silence the error: nothing fails, the graph and the time per step grow every step."""
    torch.manual_seed(0)
    if variant == "retain":
        return _context_carry(fixed, steps, **opts)
    ids, vocab = text()
    model = nn.ModuleDict({"emb": nn.Embedding(vocab, 16),
                           "gru": nn.GRU(16, 32, batch_first=True),
                           "head": nn.Linear(32, vocab)})
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batch, chunk = 8, 32
    lanes = ids[: (len(ids) // batch) * batch].view(batch, -1)
    h = torch.zeros(1, batch, 32)
    error = None
    with watch(model, opt, **opts) as mon:
        try:
            for step in range(steps):
                j = (step * chunk) % (lanes.shape[1] - chunk - 1)
                xb, yb = lanes[:, j:j + chunk], lanes[:, j + 1:j + chunk + 1]
                out, h = model["gru"](model["emb"](xb), h)
                logits = model["head"](out)
                loss = F.cross_entropy(logits.reshape(-1, vocab), yb.reshape(-1))
                loss.backward()
                opt.step()
                opt.zero_grad()
                if fixed:
                    h = h.detach()
                mon.step(loss, outputs=logits, targets=yb)
        except RuntimeError as exc:   # "Trying to backward through the graph a second time"
            error = exc
    return Run(mon, error)


def _context_carry(fixed: bool, steps: int, **opts: Any) -> Run:
    x, y = digits()
    model = nn.ModuleDict({"enc": nn.Linear(64, 32), "head": nn.Linear(32, 10)})
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    context = torch.zeros(32)
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            z = torch.tanh(model["enc"](xb))
            context = 0.9 * context + 0.1 * z.mean(0)
            loss = F.cross_entropy(model["head"](z + context), yb)
            loss.backward(retain_graph=not fixed)
            opt.step()
            opt.zero_grad()
            if fixed:
                context = context.detach()
            mon.step(loss)
    return Run(mon)


# ---------------------------------------------------------------------- vanishing-gradients (I)
def vanishing_gradients(fixed: bool, steps: int, **opts: Any) -> Run:
    """A ReLU classifier whose step schedule multiplies the learning rate by 10 every 30 steps
    (gamma=10 typed for 0.1): the units die and the first layers' gradients vanish."""
    return output_collapse(fixed, steps, variant="classes", **opts)


# ---------------------------------------------------------------------- exploding-gradients (I)
def exploding_gradients(fixed: bool, steps: int, **opts: Any) -> Run:
    """Regression whose linear learning-rate warm-up climbs to 0.3 (meant 0.03) over 200
    steps: past the stable step size the gradients grow until the loss overflows."""
    torch.manual_seed(0)
    x, y = diabetes()
    y = (y - y.mean()) / y.std()
    model = _mlp(10, 32, 1, nn.Tanh)
    opt = torch.optim.SGD(model.parameters(), 1.0, momentum=0.9)
    peak = 0.03 if fixed else 0.3
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: peak * min(1.0, (s + 1) / 200))
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            out = model(xb).squeeze(-1)
            loss = F.mse_loss(out, yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step()
            mon.step(loss, outputs=out, targets=yb)
    return Run(mon)


# ---------------------------------------------------------------------- non-finite (I)
def non_finite(fixed: bool, steps: int, **opts: Any) -> Run:
    """Standardising pixels by their std: the always-blank border pixels have std 0."""
    torch.manual_seed(0)
    x, y = digits()
    std = x.std(0) + (1e-6 if fixed else 0.0)
    x = (x - x.mean(0)) / std
    model = _mlp(64, 64, 10)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss, outputs=out, targets=yb)
    return Run(mon)


# ---------------------------------------------------------------------- params-not-updated (I)
def params_not_updated(fixed: bool, steps: int, variant: str = "no_grad", **opts: Any) -> Run:
    """'no_grad': the student's backbone runs under torch.no_grad() (copied from the frozen
    teacher's code), so it never learns. 'int-warmup': a warm-up factor written s // 500
    instead of s / 500 keeps the learning rate at exactly 0."""
    torch.manual_seed(0)
    x, y = digits()
    backbone = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    head = nn.Linear(32, 10)
    model = nn.Sequential(backbone, head)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    sched = None
    if variant == "int-warmup":
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, (lambda s: min(1.0, (s + 1) / 500)) if fixed else (lambda s: min(1, s // 500)))
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            if variant == "no_grad" and not fixed:
                with torch.no_grad():
                    feats = backbone(xb)
            else:
                feats = backbone(xb)
            loss = F.cross_entropy(head(feats), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            if sched is not None:
                sched.step()
            mon.step(loss)
    return Run(mon)


# ---------------------------------------------------------------------- params-not-in-optimizer
def params_not_in_optimizer(fixed: bool, steps: int, **opts: Any) -> Run:
    """The optimizer is built, then the head is replaced for the new task."""
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp(64, 64, 5)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    model[-1] = nn.Linear(64, 10)                       # new head for 10 classes
    if fixed:
        opt = torch.optim.Adam(model.parameters(), 1e-3)
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            mon.step(loss)
    return Run(mon)


# ---------------------------------------------------------------------- missing-zero-grad (I)
def missing_zero_grad(fixed: bool, steps: int, **opts: Any) -> Run:
    """A training loop that never calls zero_grad()."""
    torch.manual_seed(0)
    x, y = digits()
    model = _mlp(64, 64, 10)
    opt = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9)
    with watch(model, opt, **opts) as mon:
        for _, (xb, yb) in zip(range(steps), batches(x, y, 64)):
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            if fixed:
                opt.zero_grad()
            mon.step(loss)
    return Run(mon)


REPRODUCTIONS: list[Reproduction] = [
    Reproduction("loss-broadcast", "mse_loss on (N,) vs (N,1)", loss_broadcast, 100, 5,
                 variant="functional"),
    Reproduction("loss-broadcast", "nn.MSELoss on (N,) vs (N,1)", loss_broadcast, 100, 5,
                 variant="module"),
    Reproduction("loss-broadcast", "nn.L1Loss on (N,) vs (N,1)", loss_broadcast, 100, 5,
                 variant="l1"),
    Reproduction("loss-broadcast", "nn.HuberLoss on (N,) vs (N,1)", loss_broadcast, 100, 5,
                 variant="huber"),
    Reproduction("loss-broadcast", "mse_loss imported before watch()", loss_broadcast, 100, 5,
                 variant="imported"),
    Reproduction("loss-on-normalized", "mse on normalised vectors", loss_on_normalized, 100, 5),
    Reproduction("loss-term-dominates", "raw-scale task under gradient clipping",
                 loss_term_dominates, 300, 80, {"components_every": 2}),
    Reproduction("output-collapse", "weight decay 30 instead of 3e-2", output_collapse, 300, 200,
                 variant="binary"),
    Reproduction("output-collapse", "StepLR gamma=10 kills the ReLUs", output_collapse, 300, 150,
                 variant="classes"),
    Reproduction("rank-collapse", "99% invariance / 1% variance", rank_collapse, 300, 200,
                 {"rank_every": 25}),
    Reproduction("stale-statistic", "loss EMA never updated", stale_statistic, 200, 60),
    Reproduction("unreachable-threshold", "gate threshold 0.90", unreachable_threshold, 200, 60),
    Reproduction("graph-across-steps", "GRU state carried without detach", graph_across_steps,
                 100, 5, variant="error"),
    Reproduction("graph-across-steps", "carried state with retain_graph=True",
                 graph_across_steps, 100, 6, variant="retain"),
    Reproduction("vanishing-gradients", "StepLR gamma=10 kills the ReLUs", vanishing_gradients,
                 300, 150),
    Reproduction("exploding-gradients", "warm-up to 10x the stable learning rate",
                 exploding_gradients, 300, 240),
    Reproduction("non-finite", "standardised by a zero std", non_finite, 100, 3),
    Reproduction("params-not-updated", "backbone under torch.no_grad()", params_not_updated,
                 200, 60, variant="no_grad"),
    Reproduction("params-not-updated", "warm-up factor s // 500", params_not_updated, 200, 60,
                 variant="int-warmup"),
    Reproduction("params-not-in-optimizer", "head replaced after the optimizer was built",
                 params_not_in_optimizer, 100, 3),
    Reproduction("missing-zero-grad", "zero_grad() never called", missing_zero_grad, 100, 5),
]
