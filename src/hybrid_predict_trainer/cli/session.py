"""Everything a run needs, built from a validated config: the task, the trainer, the DDP
wrapper and the collective. Shared by ``hpt train`` and every ``hpt sweep`` trial."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import HybridConfig
from ..distributed import Collective, DistInfo, auto_collective, init_from_env
from ..trainer import HybridTrainer
from .schema import LoadedConfig
from .task import RunContext, Task, call_entry, resolve_entry


@dataclass
class Session:
    task: Task
    trainer: HybridTrainer
    model_for_loss: torch.nn.Module
    dist: DistInfo
    collective: Collective


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and random, so the entry function builds the same model each time."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))


def open_session(loaded: LoadedConfig, *, hybrid: HybridConfig | None = None,
                 run_dir: Path | None = None) -> Session:
    """Seed, call the entry function and wrap its model (DDP under torchrun)."""
    run = loaded.file.run
    if run.threads:
        torch.set_num_threads(run.threads)
    dist = init_from_env()
    collective = auto_collective()
    seed_everything(run.seed)
    ctx = RunContext(dist.rank, dist.world_size, dist.device, run.seed, run_dir,
                     loaded.base_dir)
    task = call_entry(resolve_entry(run.entry, loaded.base_dir), loaded.file.args, ctx)
    model_for_loss: torch.nn.Module = task.model
    if dist.world_size > 1:
        # same init everywhere (above); from here on each rank draws its own dropout masks
        torch.manual_seed(run.seed * 1_000_003 + dist.rank)
        from torch.nn.parallel import DistributedDataParallel as DDP
        ids = [dist.device.index] if dist.device.type == "cuda" else None
        model_for_loss = DDP(task.model, device_ids=ids)
    trainer = HybridTrainer(task.model, task.optimizer, hybrid or loaded.hybrid,
                            predictor=task.predictor, collective=collective)
    return Session(task, trainer, model_for_loss, dist, collective)
