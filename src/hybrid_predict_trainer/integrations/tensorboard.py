"""TensorBoard logging of the trainer's per-step figures (extra ``[tensorboard]``).

Why a hook: the trainer already hands every :class:`StepResult` to its hooks, so TensorBoard
needs no change to the training loop: ``trainer.add_hook(TensorBoardHook("runs/tb"))``. It
writes the same figures as the JSONL log and the progress bar (see
:class:`~hybrid_predict_trainer.integrations.RunningStats`), the phase as a scalar code and,
on every phase change, its reason as text.
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from ..metrics import StepResult
from ..phases import Phase
from .scalars import PHASE_CODES, RunningStats

_PHASE_LEGEND = ", ".join(f"{code} = {name}" for name, code in PHASE_CODES.items())


class TensorBoardHook:
    """Writes ``hybrid/<figure>`` scalars every ``every`` steps, and transitions as text.

    Args:
        log_dir: event-file folder, or an existing ``SummaryWriter`` via ``writer``.
        writer: a ``torch.utils.tensorboard.SummaryWriter`` to reuse (then ``log_dir`` is
            ignored and ``close()`` leaves it open).
        every: write scalars every this many steps (transitions are always written).
        prefix: tag prefix, ``hybrid`` by default.
        stats: a shared :class:`RunningStats` (one is created if omitted).
    """

    def __init__(self, log_dir: str | os.PathLike[str] | None = None, *, writer: Any = None,
                 every: int = 1, prefix: str = "hybrid", stats: RunningStats | None = None
                 ) -> None:
        if every < 1:
            raise ConfigError(f"every: must be >= 1, got {every}")
        if writer is None:
            if log_dir is None:
                raise ConfigError("TensorBoardHook: pass log_dir (a folder) or writer=")
            writer = _summary_writer(log_dir)
            self._owns = True
        else:
            self._owns = False
        self.writer = writer
        self.every = every
        self.prefix = prefix
        self.stats = stats if stats is not None else RunningStats()
        self._own_stats = stats is None
        self._legend_written = False

    def __call__(self, r: StepResult) -> None:
        if self._own_stats:
            self.stats(r)
        if not self._legend_written:
            self.writer.add_text(f"{self.prefix}/phase_codes", _PHASE_LEGEND, r.step)
            self._legend_written = True
        if r.step % self.every == 0 or r.transition:
            for name, value in self.stats.scalars(r).items():
                self.writer.add_scalar(f"{self.prefix}/{name}", value, r.step)
        if r.transition:
            phase = r.phase.value if isinstance(r.phase, Phase) else str(r.phase)
            self.writer.add_text(f"{self.prefix}/transition", f"[{phase}] {r.transition}",
                                 r.step)
        if r.event:
            self.writer.add_text(f"{self.prefix}/event", r.event, r.step)

    def add_summary(self, summary: dict[str, Any], health_report: str | None = None) -> None:
        """Write the end-of-run summary (and the health monitor's report) as text."""
        step = int(summary.get("steps", 0))
        lines = [f"{k}: {v}" for k, v in summary.items()
                 if isinstance(v, (int, float, str)) or v is None]
        self.writer.add_text(f"{self.prefix}/summary", "    " + "\n    ".join(lines), step)
        if health_report:
            self.writer.add_text(f"{self.prefix}/health",
                                 "    " + health_report.replace("\n", "\n    "), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        """Flush; close the writer if this hook created it."""
        self.writer.flush()
        if self._owns:
            self.writer.close()


def _summary_writer(log_dir: str | os.PathLike[str]) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("tensorboard: the tensorboard package is not installed; "
                          "pip install 'hybrid-predict-trainer[tensorboard]'") from None
    return SummaryWriter(log_dir=os.fspath(log_dir))
