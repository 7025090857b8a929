"""The training loop behind ``hpt train`` and every ``hpt sweep`` trial.

Why one loop for both: data position, validation, checkpoints and stopping behave the same
whether a person or the sweep runs it. Every stop decision (end of data, Ctrl-C, the health
monitor's ``stop`` policy) is voted across ranks in one small all-reduce per step, so no rank
starts a step (and its gradient all-reduce) that another rank skips.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..distributed import Collective, DistInfo, barrier, rank_rng_states
from ..errors import ConfigError
from ..metrics import JsonlWriter
from ..trainer import HybridTrainer
from .batches import epoch_batches
from .runfiles import Position, RunFiles
from .task import Task, loss_arity

_END = object()


@dataclass
class Budget:
    """When training ends: after ``epochs`` epochs or ``max_steps`` steps, whichever first."""

    epochs: int | None
    max_steps: int | None

    def done(self, pos: Position) -> bool:
        return ((self.max_steps is not None and pos.step >= self.max_steps)
                or (self.epochs is not None and pos.epoch >= self.epochs))


@dataclass
class Outcome:
    """How a run ended: 'finished', 'interrupted' (Ctrl-C), 'monitor-stop' or 'target'."""

    status: str
    position: Position
    val_loss: float | None = None
    evals: list[tuple[int, float, float]] = field(default_factory=list)


@dataclass
class LoopOptions:
    seed: int = 0
    shard: str = "batches"
    eval_every: int = 0
    checkpoint_every: int = 0
    keep_checkpoints: int = 2


class Runner:
    """Runs ``task`` with ``trainer`` from a :class:`Position` until the budget or a stop.

    Args:
        model_for_loss: what ``task.loss`` is called with (the DDP wrapper under torchrun).
        files: the run folder (rank 0 writes checkpoints); None for no checkpoints.
        writer: the metrics JSONL (eval records are appended to it); None on ranks > 0.
        interrupted: returns True once the user asked to stop (Ctrl-C).
        on_eval: called with (val_loss, position) after each validation; returning True ends
            the run with status 'target' (the sweep's time-to-target objective).
    """

    def __init__(self, task: Task, trainer: HybridTrainer, budget: Budget, opts: LoopOptions,
                 *, dist: DistInfo, collective: Collective, model_for_loss: torch.nn.Module,
                 files: RunFiles | None = None, writer: JsonlWriter | None = None,
                 interrupted: Callable[[], bool] = lambda: False,
                 on_eval: Callable[[float, Position], bool] | None = None) -> None:
        self.task, self.trainer, self.budget, self.opts = task, trainer, budget, opts
        self.dist, self.collective, self.model_for_loss = dist, collective, model_for_loss
        self.files, self.writer = files, writer
        self.interrupted, self.on_eval = interrupted, on_eval
        self._two_args = loss_arity(task.loss) == 2
        if not self._two_args and dist.world_size > 1:
            raise ConfigError("task.loss: under torchrun write loss(model, batch), so that hpt "
                              "can pass the DDP-wrapped model (loss(batch) would bypass the "
                              "gradient all-reduce)")
        self.evals: list[tuple[int, float, float]] = []
        self.last_checkpoint_step: int | None = None

    # ------------------------------------------------------------------ the loop
    def run(self, pos: Position) -> Outcome:
        if self.budget.done(pos):
            return Outcome("finished", pos, self._last_val())
        excluded = 0.0
        t_start = time.perf_counter()
        base_time = pos.train_time_s

        def clock() -> float:
            return base_time + (time.perf_counter() - t_start) - excluded

        while not self.budget.done(pos):
            batches = epoch_batches(self.task.train, pos.epoch, self.opts.seed,
                                    rank=self.dist.rank, world_size=self.dist.world_size,
                                    shard=self.opts.shard, skip=pos.batch)
            stepped_this_epoch = False
            while True:
                batch = next(batches, _END)
                has, interrupt, mstop = self.collective.mean(
                    [float(batch is not _END), float(self.interrupted()),
                     float(self.trainer.should_stop)])
                if interrupt > 0 or mstop > 0:
                    pos.train_time_s = clock()
                    return Outcome("interrupted" if interrupt > 0 else "monitor-stop", pos,
                                   self._last_val(), self.evals)
                if has < 1.0:       # some rank ran out of data: the epoch ends for all
                    break
                self.trainer.step(self._closure(batch))
                stepped_this_epoch = True
                pos.batch += 1
                pos.step += 1
                if self.task.scheduler is not None:
                    self.task.scheduler.step()
                pos.train_time_s = clock()
                if self.opts.eval_every and pos.step % self.opts.eval_every == 0:
                    t = time.perf_counter()
                    hit = self._evaluate(pos)
                    excluded += time.perf_counter() - t
                    if hit:
                        return Outcome("target", pos, self._last_val(), self.evals)
                if (self.files is not None and self.opts.checkpoint_every
                        and pos.step % self.opts.checkpoint_every == 0):
                    t = time.perf_counter()
                    self.checkpoint(pos)
                    excluded += time.perf_counter() - t
                if self.budget.max_steps is not None and pos.step >= self.budget.max_steps:
                    break
            if not stepped_this_epoch and pos.batch == 0:
                raise ConfigError(f"task.train: epoch {pos.epoch} yielded no batches; check the "
                                  "data loader (and batch size vs data set size)")
            if self.budget.max_steps is not None and pos.step >= self.budget.max_steps \
                    and has >= 1.0:
                break                               # budget hit mid-epoch: keep the position
            pos.epoch += 1
            pos.batch = 0
            if self.opts.eval_every == 0 and self.task.validate is not None:
                t = time.perf_counter()
                hit = self._evaluate(pos)
                excluded += time.perf_counter() - t
                if hit:
                    return Outcome("target", pos, self._last_val(), self.evals)
        pos.train_time_s = clock()
        return Outcome("finished", pos, self._last_val(), self.evals)

    def checkpoint(self, pos: Position) -> None:
        """Rank 0 writes the checkpoint; every rank waits for it."""
        rng = rank_rng_states()                 # collective: every rank takes part
        if self.files is not None and self.dist.is_main:
            self.files.save_checkpoint(self.trainer, pos, self.task.scheduler,
                                       keep=self.opts.keep_checkpoints, rank_rng=rng)
        barrier()
        self.last_checkpoint_step = pos.step

    def final_eval(self, pos: Position) -> float | None:
        """Validate at the final position unless the last validation was already there."""
        if self.task.validate is not None and (not self.evals or self.evals[-1][0] != pos.step):
            self._evaluate(pos)
        return self._last_val()

    # ------------------------------------------------------------------ helpers
    def _closure(self, batch: Any) -> Callable[[], Any]:
        loss, model = self.task.loss, self.model_for_loss
        if self._two_args:
            return lambda: loss(model, batch)
        return lambda: loss(batch)

    def _evaluate(self, pos: Position) -> bool:
        """Validation loss (averaged over ranks); the RNG is left as it was."""
        if self.task.validate is None:
            return False
        model = self.task.model
        was_training = model.training
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            model.eval()
            try:
                value = float(self.task.validate(model))
            finally:
                model.train(was_training)
        value = self.collective.mean([value])[0]
        self.evals.append((pos.step, pos.train_time_s, value))
        if self.writer is not None:
            self.writer.write({"type": "eval", "step": pos.step, "epoch": pos.epoch,
                               "train_time_s": pos.train_time_s, "val_loss": value})
        return bool(self.on_eval(value, pos)) if self.on_eval is not None else False

    def _last_val(self) -> float | None:
        return self.evals[-1][2] if self.evals else None
