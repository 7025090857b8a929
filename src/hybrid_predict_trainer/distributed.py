"""How the trainer agrees with other processes. Single process: a no-op.

Why a tiny protocol: every phase decision is computed from statistics that first pass
through ``Collective.mean``. Under DDP those statistics are all-reduced, so every rank takes
the same branch and no rank runs a backward (with its gradient all-reduce) that another skips.

:class:`TorchDistributedCollective` is the ``torch.distributed`` implementation (gloo on CPU,
NCCL on GPU, same code). The helpers below start a process group from the variables
``torchrun`` sets, agree on a yes/no across ranks, and measure how far replicas drifted apart.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import torch

from .errors import ConfigError


class Collective(Protocol):
    """Averages a few floats across processes; returns them in the same order."""

    world_size: int

    def mean(self, values: Sequence[float]) -> list[float]: ...


class LocalCollective:
    """The single-process collective: returns its input."""

    world_size = 1

    def mean(self, values: Sequence[float]) -> list[float]:
        return [float(v) for v in values]


class TorchDistributedCollective:
    """Averages decision statistics over the ranks of a ``torch.distributed`` process group.

    One ``all_reduce`` (sum) of a small float64 tensor per call, divided by the world size.
    float64 because the averaged losses feed comparisons such as ``after < before``; summing
    in float32 could round two close values onto the same side differently than the user
    expects. The sum of identical inputs in the same order is identical on every rank, so
    every rank reads back the same numbers and takes the same branch.

    Args:
        group: the process group (default: the world).
        device: where the reduction tensor lives. Default: the current CUDA device for NCCL,
            the CPU otherwise.
    """

    def __init__(self, group: object | None = None, device: torch.device | str | None = None
                 ) -> None:
        dist = _dist()
        if not dist.is_initialized():
            raise ConfigError("collective: torch.distributed is not initialized; call "
                              "torch.distributed.init_process_group (torchrun sets the "
                              "environment) or use hybrid_predict_trainer.distributed."
                              "init_from_env() first")
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if device is None:
            backend = str(dist.get_backend(group)).lower()
            device = (torch.device("cuda", torch.cuda.current_device())
                      if "nccl" in backend else torch.device("cpu"))
        self.device = torch.device(device)

    def mean(self, values: Sequence[float]) -> list[float]:
        vals = [float(v) for v in values]
        if not vals:
            return []
        t = torch.tensor(vals, dtype=torch.float64, device=self.device)
        _dist().all_reduce(t, op=_dist().ReduceOp.SUM, group=self.group)
        t /= self.world_size
        return [float(x) for x in t.tolist()]


def auto_collective() -> Collective:
    """The collective for this process: distributed when a multi-rank group is running."""
    if _dist_ready() and _dist().get_world_size() > 1:
        return TorchDistributedCollective()
    return LocalCollective()


def agree_any(collective: Collective, flag: bool) -> bool:
    """True on every rank if ``flag`` is True on any rank (e.g. Ctrl-C, a monitor stop).

    Why: a decision taken by one rank alone (stopping, raising) leaves the others waiting in
    the next gradient all-reduce forever. Voting first makes it a collective decision.
    """
    return collective.mean([1.0 if flag else 0.0])[0] > 0.0


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, local rank and the device it should use."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files (checkpoints, logs, summary); the others only compute."""
        return self.rank == 0


def init_from_env(backend: str | None = None, timeout_s: float = 600.0) -> DistInfo:
    """Start the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ...).

    Without those variables (plain ``python``), returns a one-process ``DistInfo`` and starts
    nothing. ``backend`` defaults to NCCL when CUDA is available, gloo otherwise. A GPU run
    uses ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world <= 1:
        return DistInfo(0, 1, 0, device)
    dist = _dist()
    if not dist.is_initialized():
        chosen = backend or ("nccl" if cuda else "gloo")
        if chosen not in ("nccl", "gloo", "mpi", "ucc"):
            raise ConfigError(f"backend: unknown '{chosen}'; use 'gloo' (CPU) or 'nccl' (GPU)")
        dist.init_process_group(chosen, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, device)


def shutdown(clean: bool = True) -> None:
    """End the process group at a controlled point.

    Why: a process that exits with the group still alive tears down gloo's communication
    threads during interpreter shutdown, which aborts the process (SIGABRT, "terminate called
    without an active exception") at random. After a clean run every rank first meets at a
    barrier; after an error the group is destroyed without waiting for ranks that may be gone.
    """
    if not _dist_ready():
        return
    import gc

    gc.collect()  # DDP reducers still referencing the group must go while Python is alive
    dist = _dist()
    try:
        if clean:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def current() -> DistInfo:
    """This process's rank and world size (one process when no group is running)."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
    if _dist_ready():
        return DistInfo(_dist().get_rank(), _dist().get_world_size(), local, device)
    return DistInfo(0, 1, 0, device)


@torch.no_grad()
def replica_max_abs_diff(params: Iterable[torch.Tensor]) -> float:
    """Largest absolute difference between this rank's values and rank 0's, over all ranks.

    Why: "the replicas stayed identical" should be a number one can assert on (0.0 means
    bit-identical). Cost: one broadcast of the flattened parameters and one scalar
    all-reduce. Every rank must call it. Returns 0.0 in a single process.
    """
    flat = torch.cat([p.detach().reshape(-1).to(torch.float64) for p in params])
    if not (_dist_ready() and _dist().get_world_size() > 1):
        return 0.0
    dist = _dist()
    backend = str(dist.get_backend()).lower()
    if "nccl" in backend:
        flat = flat.cuda()
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    diff = (flat - ref).abs().max().reshape(1)
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def rank_rng_states() -> list[dict[str, torch.Tensor]] | None:
    """Every rank's torch RNG state (CPU, and the current CUDA device), gathered on all ranks.

    Why: a trainer checkpoint written by rank 0 holds rank 0's RNG. Restoring each rank's
    own state on resume keeps every rank's dropout masks as in an uninterrupted run. None in
    a single process. Every rank must call it.
    """
    if not (_dist_ready() and _dist().get_world_size() > 1):
        return None
    own = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        own["cuda"] = torch.cuda.get_rng_state()
    states: list[dict[str, torch.Tensor] | None] = [None] * _dist().get_world_size()
    _dist().all_gather_object(states, own)
    return [s for s in states if s is not None]


def restore_rank_rng(states: Sequence[dict[str, torch.Tensor]] | None) -> bool:
    """Set this rank's RNG from :func:`rank_rng_states` output (same world size only)."""
    info = current()
    if not states or len(states) != info.world_size or info.world_size == 1:
        return False
    mine = states[info.rank]
    torch.set_rng_state(mine["torch"].cpu())
    if "cuda" in mine and torch.cuda.is_available():
        torch.cuda.set_rng_state(mine["cuda"].cpu())
    return True


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _dist_ready() and _dist().get_world_size() > 1:
        _dist().barrier()


def _dist():  # type: ignore[no-untyped-def]
    import torch.distributed as dist
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise ConfigError("collective: this torch build has no torch.distributed support; "
                          "install a standard torch wheel")
    return dist


def _dist_ready() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()
