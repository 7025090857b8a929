"""``output-collapse``: the model's outputs stop depending on the input (case F).

Why three signals: a collapse shows as (1) the spread of an output between samples falling far
below its peak; (2) a classifier predicting one class for a batch that holds several, at half
the accuracy it had reached after warm-up (early in training, predicting the most frequent class
for everything is a normal phase, and its accuracy is the best so far); or (3) a binary output
whose predicted-positive rate fell to 0 (or 1) while 30-70% of targets are positive, after it
had been 10 points more accurate than always predicting the majority. Each needs
``collapse_patience`` consecutive reads after warm-up. All statistics of one read are stacked
and fetched with one sync, every ``outputs_every`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..util import fmt, named_tensors
from .base import Check, StepContext

_MAX_ROWS = 1024
_SKILL = 0.1  # accuracy above the majority share that shows a binary output had learned


@dataclass
class _State:
    reads: int = 0
    peak: float = 0.0
    peak_step: int = 0
    low: int = 0
    single: int = 0
    flat_rate: int = 0
    best_acc: float = 0.0
    best_gain: float = 0.0


class OutputCollapseCheck(Check):
    """Reads the ``outputs`` (and ``targets``) passed to ``step()``."""

    name = "outputs"
    codes = ("output-collapse",)
    every = "outputs_every"

    def __init__(self) -> None:
        super().__init__()
        self._state: dict[str, _State] = {}

    def on_step(self, ctx: StepContext) -> None:
        if ctx.outputs is None:
            return
        with self.timed():
            tgts = dict(named_tensors(ctx.targets, "outputs"))
            for name, out in named_tensors(ctx.outputs, "outputs"):
                if out.is_floating_point() and out.dim() >= 1 and out.shape[0] >= 2:
                    self._read(ctx.step, name, out.detach(), tgts.get(name))

    def _read(self, step: int, name: str, out: torch.Tensor, tgt: torch.Tensor | None) -> None:
        cfg = self.monitor.config
        flat = out[:_MAX_ROWS].reshape(min(out.shape[0], _MAX_ROWS), -1).float()
        stats = [flat.std(0).mean()]
        kind = None
        if tgt is not None and not tgt.is_floating_point() and out.dim() >= 2 \
                and tuple(out.shape[:-1]) == tuple(tgt.shape) and out.shape[-1] >= 2:
            kind = "class"
            pred = out.reshape(-1, out.shape[-1])[:4096].argmax(1)
            t = tgt.reshape(-1)[:4096]
            p_lo, p_hi = torch.aminmax(pred)
            t_lo, t_hi = torch.aminmax(t)
            stats += [torch.stack([p_lo, p_hi, t_lo, t_hi, (pred == t).sum()]).float()]
        elif tgt is not None and tgt.is_floating_point() and tgt.shape == out.shape:
            kind = "binary"
            t, o = tgt.detach().reshape(-1)[:65536].float(), out.reshape(-1)[:65536].float()
            probs = (o.min() >= 0) & (o.max() <= 1)
            thr = torch.where(probs, 0.5, 0.0)
            hit = o > thr
            stats += [torch.stack([((t == 0) | (t == 1)).all().float(), t.mean(),
                                   hit.float().mean(), (hit == (t > 0.5)).float().mean()])]
        vals = torch.cat([stats[0].reshape(1)] + stats[1:]).tolist()
        if kind == "class":  # -> spread, all_same, varied, predicted class, accuracy
            p_lo, p_hi, t_lo, t_hi, correct = vals[1:]
            vals = [vals[0], float(p_lo == p_hi), float(t_lo != t_hi), p_lo,
                    correct / pred.numel()]
        st = self._state.setdefault(name, _State())
        st.reads += 1
        spread = vals[0]
        collapsed_from = st.peak  # compared with the peak of earlier reads
        if st.reads > 1 and spread > st.peak:
            st.peak, st.peak_step = spread, step
        if step <= cfg.warmup_steps:
            return
        best_acc = st.best_acc  # after warm-up only: early accuracy is noise
        if kind == "class":
            st.best_acc = max(st.best_acc, vals[4])
        elif kind == "binary":  # skill above always predicting the majority
            st.best_gain = max(st.best_gain, vals[4] - max(vals[2], 1 - vals[2]))
        st.low = st.low + 1 if spread < cfg.collapse_ratio * collapsed_from else 0
        if st.low >= cfg.collapse_patience:
            self._spread(name, spread, st)
        if kind == "class":
            all_same, varied, cls, acc = vals[1] > 0, vals[2] > 0, int(vals[3]), vals[4]
            st.single = st.single + 1 if all_same and varied and acc <= 0.5 * best_acc else 0
            if st.single >= cfg.collapse_patience:
                self._single_class(name, cls, acc, flat.shape[0], st)
        elif kind == "binary":
            is_binary, rate_t, rate_p = vals[1] > 0, vals[2], vals[3]
            flat_rate = (is_binary and 0.3 <= rate_t <= 0.7 and rate_p in (0.0, 1.0)
                         and st.best_gain >= _SKILL)
            st.flat_rate = st.flat_rate + 1 if flat_rate else 0
            if st.flat_rate >= cfg.collapse_patience:
                self._flat_rate(name, rate_p, rate_t, st)

    def _spread(self, name: str, spread: float, st: _State) -> None:
        cfg = self.monitor.config
        self.monitor.emit(
            "output-collapse", name,
            observed=f"spread between samples {fmt(spread)}, "
                     f"{100 * spread / st.peak:.1f}% of its peak {fmt(st.peak)} "
                     f"(step {st.peak_step}), in {st.low} consecutive reads",
            expected=f"spread above {100 * cfg.collapse_ratio:.0f}% of its peak",
            message=f"'{name}' stopped varying between samples: nearly every sample now "
                    "gets the same prediction, whatever its input.",
            suggestion="look for a loss term that rewards a constant prediction here (a "
                       "dominating term, a wrong target or mask, dead activations).")

    def _single_class(self, name: str, cls: int, acc: float, rows: int, st: _State) -> None:
        self.monitor.emit(
            "output-collapse", name,
            observed=f"class {cls} predicted for every one of {rows} samples in {st.single} "
                     f"consecutive reads; accuracy {100 * acc:.1f}% after "
                     f"{100 * st.best_acc:.1f}% earlier",
            expected="predictions that vary with the input (the targets hold several "
                     "classes)",
            message=f"'{name}' predicts the same class for every sample although the targets "
                    "hold several classes: the classifier has collapsed.",
            suggestion="check the learning rate and the activations for dead units; check "
                       "that the targets reach the loss unchanged.")

    def _flat_rate(self, name: str, rate_p: float, rate_t: float, st: _State) -> None:
        self.monitor.emit(
            "output-collapse", name,
            observed=f"predicted-positive rate {100 * rate_p:.1f}% while {100 * rate_t:.1f}% "
                     f"of targets are positive, in {st.flat_rate} consecutive reads",
            expected="a predicted-positive rate between 0 and 100%",
            message=f"'{name}' predicts the same side of the decision threshold for every "
                    "element, while the targets are mixed: the output has collapsed to a "
                    "constant.",
            suggestion="look for a loss term that swamps this one or a target/mask that "
                       "rewards predicting a constant.")
