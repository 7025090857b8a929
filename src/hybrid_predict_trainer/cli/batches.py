"""The batches of one epoch, in an order that a resumed run can replay exactly.

Why: resuming mid-epoch must continue with the batch after the last one trained, not start
the epoch over (which would train some examples twice) or draw a new shuffle (which would
skip some). The order of an epoch therefore depends only on (seed, epoch); the consumed
batches are skipped by iterating past them, and creating the iterator never draws from the
global RNG, so dropout masks after a resume match an uninterrupted run.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from .task import Batches


def epoch_seed(seed: int, epoch: int) -> int:
    """A per-epoch seed: distinct for every (seed, epoch), stable across runs."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2 ** 63 - 1)


def epoch_batches(train: Batches, epoch: int, seed: int, *, rank: int = 0, world_size: int = 1,
                  shard: str = "batches", skip: int = 0) -> Iterator[Any]:
    """Iterate the batches of ``epoch`` for this rank, after skipping ``skip`` of them.

    ``shard="batches"`` (several processes): every rank walks the same order and takes every
    ``world_size``-th batch; a last incomplete group is dropped so that all ranks run the
    same number of steps. ``shard="none"``: the source already yields this rank's batches.
    """
    with torch.random.fork_rng(devices=[]):
        source = train(epoch) if callable(train) else _reseeded(train, epoch, seed)
        it: Iterator[Any] = iter(source)
    if world_size > 1 and shard == "batches":
        it = _stride(it, rank, world_size)
    return itertools.islice(it, skip, None)


def batches_per_epoch(train: Batches, world_size: int = 1, shard: str = "batches") -> int | None:
    """This rank's batches per epoch, when the source has a length (for the progress bar)."""
    if callable(train) or not hasattr(train, "__len__"):
        return None
    n = len(train)  # type: ignore[arg-type]
    return n // world_size if world_size > 1 and shard == "batches" else n


def _reseeded(train: Any, epoch: int, seed: int) -> Any:
    if isinstance(train, DataLoader):
        sampler = train.sampler
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        elif isinstance(sampler, RandomSampler):
            sampler.generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return train


def _stride(it: Iterator[Any], rank: int, world_size: int) -> Iterator[Any]:
    while True:
        group = list(itertools.islice(it, world_size))
        if len(group) < world_size:
            return
        yield group[rank]
