"""The small real training run every numeric fault is injected into, and how damage is measured.

Workload: an MLP 784-64-10 on 1,000 real MNIST digits (500 more for validation), AdamW
lr 2e-3, batch 100, the library's default ``HybridConfig`` except ``cost_model="fixed"`` and
``segments=True``: predicted segments (with their checks, snapshots and rollbacks) on top of
the default jumps, so faults also land in the fullest state machine. The fixed cost model makes every trainer decision a function of the data alone, so a clean run
and a faulted run are bit-identical up to the moment of the fault; that is what lets
"steps of progress lost" be measured exactly instead of estimated from noisy loss curves.

Steps of progress lost (per fault): after the trainer recovers, its weights -- after the
step, or the restore point it wrote into the parameters during a recovering step (recorded by
wrapping ``trainer.flat.write_from``) -- are compared bit for bit with the clean run's weights
after every step. If at step ``t`` of the faulted run they equal the clean run's weights after
step ``s``, the recovery undid ``t - s`` steps of progress (a skipped batch costs 1; a rollback
to a snapshot taken 7 steps earlier costs 7). The figure is the largest such distance seen
after the fault. The bound it is compared with is the *current segment*: a restore must not
land before the start of the phase run the fault hit (a Full stretch since its last snapshot,
or a predicted segment with its Correct steps).
"""
from __future__ import annotations

import functools
import hashlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from hybrid_predict_trainer import HybridConfig, HybridTrainer, HPTError
from hybrid_predict_trainer.metrics import StepResult
from hybrid_predict_trainer.phases import Phase

Batch = tuple[torch.Tensor, torch.Tensor]


@functools.lru_cache(maxsize=1)
def mnist_split() -> tuple[torch.Tensor, ...]:
    """1,000 train / 500 validation real digits (the same slice as the test fixture)."""
    from hybrid_predict_trainer.data import load_mnist5k
    x, y = load_mnist5k()
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:1500]
    x, y = x[perm], y[perm]
    return x[:1000], y[:1000], x[1000:], y[1000:]


def batch_list(x: torch.Tensor, y: torch.Tensor, steps: int, bs: int = 100,
               seed: int = 1) -> list[Batch]:
    """``steps`` batches, epoch after epoch, each epoch a fresh seeded shuffle."""
    g = torch.Generator().manual_seed(seed)
    out: list[Batch] = []
    while len(out) < steps:
        perm = torch.randperm(x.shape[0], generator=g)
        for i in range(0, x.shape[0] - bs + 1, bs):
            idx = perm[i:i + bs]
            out.append((x[idx], y[idx]))
            if len(out) == steps:
                break
    return out


def make_model(seed: int = 0, hidden: int = 64) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 10))


@dataclass
class Workload:
    steps: int = 150
    hidden: int = 64
    lr: float = 2e-3
    seed: int = 0
    monitor: bool = True
    config: dict[str, Any] = field(default_factory=dict)

    def hybrid_config(self) -> HybridConfig:
        return HybridConfig(**{"cost_model": "fixed", "segments": True, "monitor": self.monitor,
                               **self.config})

    def build(self, predictor: Any = None) -> tuple[torch.nn.Module, torch.optim.Optimizer,
                                                     HybridTrainer]:
        model = make_model(self.seed, self.hidden)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = HybridTrainer(model, opt, self.hybrid_config(), predictor=predictor)
        return model, opt, trainer

    def data(self) -> tuple[list[Batch], torch.Tensor, torch.Tensor]:
        xtr, ytr, xva, yva = mnist_split()
        return batch_list(xtr, ytr, self.steps), xva, yva


@dataclass
class StepContext:
    """What a fault sees before and after each step."""

    index: int
    trainer: HybridTrainer
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batch: Batch
    closure: Callable[[], torch.Tensor]


class Fault:
    """Base class: override ``before`` (may return a replacement closure) and ``after``."""

    name = "fault"
    source = ""            # text the trainer's signal (and the monitor's finding) must contain
    finding_where = None   # text the monitor's non-finite finding must contain, if any
    needs_predictor: Any = None

    def __init__(self) -> None:
        self.injected: list[int] = []

    def before(self, ctx: StepContext) -> Callable[[], torch.Tensor] | None:
        return None

    def after(self, ctx: StepContext, result: StepResult) -> None:
        return None

    @property
    def duration(self) -> int:
        return len(self.injected)


@dataclass
class Run:
    val: list[float]
    results: list[StepResult]
    flats: list[bytes]                  # digest of the weights after each step (exact compare)
    trainer: HybridTrainer
    model: torch.nn.Module
    error: str | None = None
    writes: dict[int, list[bytes]] = field(default_factory=dict)  # weights the trainer wrote
    # into the parameters during each step (rollbacks, restores, check evaluations), digested

    @property
    def final_val(self) -> float:
        return self.val[-1] if self.val else math.nan

    def phases(self) -> str:
        """One letter per step: w(armup) f(ull) P(redicted) c(orrect); R = rolled back."""
        out = []
        for r in self.results:
            ch = "P" if r.predicted else r.phase.value[0]
            out.append(ch + ("!" if r.rolled_back or not r.backward and not r.predicted else ""))
        return "".join(out)


def _loss(model: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(xb), yb)


def train(wl: Workload, fault: Fault | None = None, *, checkpoint: Any = None,
          checkpoint_every: int = 0) -> Run:
    """Run the workload with ``fault`` injected; an HPTError ends the run (recorded)."""
    batches, xva, yva = wl.data()
    model, opt, trainer = wl.build(fault.needs_predictor if fault else None)
    val: list[float] = []
    results: list[StepResult] = []
    flats: list[bytes] = []
    writes: dict[int, list[bytes]] = {}
    error = None
    now = {"i": 0}
    write_from = trainer.flat.write_from

    def recording_write(buf: torch.Tensor) -> None:
        writes.setdefault(now["i"], []).append(_digest(buf))
        write_from(buf)
    trainer.flat.write_from = recording_write  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for i, (xb, yb) in enumerate(batches):
                def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
                    return _loss(model, xb, yb)
                now["i"] = i
                ctx = StepContext(i, trainer, model, opt, (xb, yb), closure)
                if fault is not None:
                    closure = fault.before(ctx) or closure
                r = trainer.step(closure)
                if fault is not None:
                    fault.after(ctx, r)
                results.append(r)
                with torch.no_grad():
                    val.append(float(_loss(model, xva, yva)))
                flats.append(_digest(trainer.flat.flatten()))
                if checkpoint is not None and checkpoint_every and (i + 1) % checkpoint_every == 0:
                    trainer.save(checkpoint)
    except HPTError as exc:
        error = f"{type(exc).__name__}: {exc}"
    return Run(val, results, flats, trainer, model, error, writes)


def _digest(t: torch.Tensor) -> bytes:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).digest()


def acted(r: StepResult) -> bool:
    """The trainer visibly recovered on this step: skipped it, rejected a check, rolled back
    or restored."""
    return bool(r.rolled_back or r.accepted is False or (not r.backward and not r.predicted)
                or any(w in (r.transition or "") for w in ("rolled back", "restored")))


def rollback_matches(clean: Run, faulted: Run, start: int) -> list[tuple[int, int]]:
    """Every ``(t, s)`` with ``s < t``, ``t >= start``, where the faulted run's weights after
    step ``t`` -- or, on a step where the trainer recovered, the last weights it wrote into the
    parameters during step ``t`` (the restore point of a rollback that the same step then
    trained on from) -- equal byte for byte the clean run's weights after step ``s``."""
    where: dict[bytes, list[int]] = {}
    for s, b in enumerate(clean.flats):
        where.setdefault(b, []).append(s)
    out = []
    for t in range(start, len(faulted.flats)):
        candidates = [faulted.flats[t]]
        if acted(faulted.results[t]) and faulted.writes.get(t):
            candidates.append(faulted.writes[t][-1])
        best = None
        for c in candidates:
            earlier = [s for s in where.get(c, ()) if s < t]
            if earlier and (best is None or max(earlier) < best):
                best = max(earlier)
        if best is not None and not (faulted.flats[t] == clean.flats[t]):
            out.append((t, best))
    return out


def segment_start(clean: Run, step: int) -> int:
    """First step of the phase run (Full stretch, or predicted segment + its Correct steps)
    that contains ``step`` in the clean run: the rollback bound for a fault there."""
    def kind(r: StepResult) -> str:
        if r.phase is Phase.WARMUP:
            return "warmup"
        return "full" if r.phase is Phase.FULL and not r.predicted else "segment"
    results = clean.results
    k = kind(results[step])
    i = step
    while i > 0 and kind(results[i - 1]) == k:
        if k == "segment" and results[i].predicted and results[i - 1].phase is Phase.CORRECT:
            break       # a new predicted segment begins after the previous one's Correct steps
        i -= 1
    if k == "full":
        i += 50 * ((step - i) // 50)    # Full refreshes its snapshot every 50 real steps
    return i


def progress_lag(clean: Run, faulted: Run, t: int) -> int:
    """Steps the faulted run is behind the clean run after step ``t``, read off validation loss:
    ``t - s`` where ``s`` is the first step after which the clean run's best validation loss so
    far was at least as good as the faulted run's at ``t``. Negative: the faulted run is ahead
    (``s > t``); ``t - len(clean)`` when the clean run never got that good."""
    v = faulted.val[t]
    best = math.inf
    for s, c in enumerate(clean.val):
        best = min(best, c)
        if best <= v:
            return t - s
    return t - len(clean.val)
