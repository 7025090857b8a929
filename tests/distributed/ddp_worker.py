"""Run by ``torchrun --nproc-per-node 2`` from test_ddp.py (not collected by pytest).

Trains an MLP with dropout on real MNIST digits under DDP (gloo), each rank on its own
batches, through Warmup -> Full -> Predict -> Correct, with a loss that makes every
segment's end provably worse on the verdict batch so the segment is rolled back. Rank 0
saves a checkpoint mid-run; afterwards every rank loads it into a fresh model and continues.
Each rank writes what it did to OUT/rank<r>.json.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

from hybrid_predict_trainer import HybridConfig, HybridTrainer, Phase  # noqa: E402
from hybrid_predict_trainer.data import load_mnist5k  # noqa: E402
from hybrid_predict_trainer.distributed import (TorchDistributedCollective, barrier,  # noqa: E402
                                                init_from_env, replica_max_abs_diff, shutdown)

STEPS, SAVE_AT, MORE = 44, 30, 10
CFG = dict(monitor=False, segments=True, auto_off=False, confidence_threshold=0.0,
           warmup_steps=5, full_steps=3, cost_model="fixed", max_horizon=4, horizons=[4],
           bandit=False)


def build(seed: int) -> tuple[torch.nn.Module, DDP, torch.optim.Optimizer, HybridTrainer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(32, 10))
    ddp = DDP(model)              # broadcasts rank 0's weights
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    trainer = HybridTrainer(model, opt, HybridConfig(**CFG),
                            collective=TorchDistributedCollective())
    return model, ddp, opt, trainer


def state_tensors(model: torch.nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    out = [p.detach() for p in model.parameters()]
    for st in opt.state.values():
        out += [v for v in st.values() if torch.is_tensor(v)]
    return out


def run(trainer: HybridTrainer, ddp: DDP, model: torch.nn.Module, data: list, start: int,
        stop: int, log: list) -> None:
    snap: list[torch.Tensor] | None = None
    penalise = False
    for i in range(start, stop):
        x, y = data[i]

        def closure() -> torch.Tensor:
            loss = F.cross_entropy(ddp(x), y)
            if penalise and snap is not None:
                loss = loss + 1e4 * sum((p - s).pow(2).sum()
                                        for p, s in zip(model.parameters(), snap))
            return loss
        r = trainer.step(closure)
        log.append({"step": r.step, "phase": r.phase.value, "backward": r.backward,
                    "predicted": r.predicted, "rolled_back": r.rolled_back, "loss": r.loss})
        penalise = r.phase is Phase.PREDICT and trainer.phase is Phase.CORRECT
        if trainer.phase is Phase.PREDICT and r.phase is not Phase.PREDICT:
            snap = [p.detach().clone() for p in model.parameters()]


def main(out: str) -> None:
    info = init_from_env()
    assert info.world_size == 2
    x, y = load_mnist5k()
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]             # the file is sorted by class
    n = 50
    data = [(x[(k * 2 + info.rank) * n:(k * 2 + info.rank + 1) * n],
             y[(k * 2 + info.rank) * n:(k * 2 + info.rank + 1) * n]) for k in range(STEPS + MORE)]
    model, ddp, opt, trainer = build(seed=info.rank)   # different seeds: DDP must sync them
    log: list = []
    ckpt = os.path.join(out, "ckpt.pt")
    run(trainer, ddp, model, data, 0, SAVE_AT, log)
    if info.is_main:
        trainer.save(ckpt)
    barrier()
    run(trainer, ddp, model, data, SAVE_AT, STEPS, log)
    diff_end = replica_max_abs_diff(state_tensors(model, opt))
    transitions = [(t.src.value, t.dst.value) for t in trainer.transitions]
    summary = trainer.summary()

    model2, ddp2, opt2, resumed = build(seed=100 + info.rank)
    resumed.load(ckpt)
    diff_loaded = replica_max_abs_diff(state_tensors(model2, opt2))
    log2: list = []
    run(resumed, ddp2, model2, data, SAVE_AT, SAVE_AT + MORE, log2)
    diff_resumed = replica_max_abs_diff(state_tensors(model2, opt2))
    with open(os.path.join(out, f"rank{info.rank}.json"), "w") as fh:
        json.dump({"log": log, "log_resumed": log2, "transitions": transitions,
                   "summary": {k: summary[k] for k in ("steps", "backward_passes",
                                                      "predicted_steps", "rollbacks")},
                   "resumed_steps": resumed.stats.steps, "diff_end": diff_end,
                   "diff_loaded": diff_loaded, "diff_resumed": diff_resumed}, fh)
    # DDP reducers hold the process group and pending work: release them while the
    # interpreter is fully alive, then end the group (gloo aborts the process otherwise)
    del model, ddp, opt, trainer, model2, ddp2, opt2, resumed
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
