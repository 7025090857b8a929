"""Data-parallel training with your own loop under torchrun (gloo on CPU, NCCL on GPU).

    torchrun --nproc-per-node 2 examples/ddp_train.py

Three things differ from the single-process loop: start the process group, wrap the model in
DDP and call the *DDP wrapper* inside the loss function (so real steps all-reduce their
gradients), and give ``wrap`` the inner module. ``wrap`` picks the torch.distributed
collective by itself, so every rank takes the same phase decisions and applies the same
predicted update.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from hybrid_predict_trainer.data import load_mnist5k
from hybrid_predict_trainer.distributed import init_from_env, replica_max_abs_diff, shutdown
from hybrid_predict_trainer.integrations import wrap


def main(steps: int = 150, batch: int = 64) -> None:
    info = init_from_env()                       # reads RANK, WORLD_SIZE, LOCAL_RANK
    torch.manual_seed(0)
    x, y = load_mnist5k()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm].to(info.device), y[perm].to(info.device)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10)).to(info.device)
    ddp = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    hybrid = wrap(model, optimizer, monitor=info.is_main)   # one health report, from rank 0
    for step in range(steps):
        k = (step * info.world_size + info.rank) % (4000 // batch)    # this rank's batch
        xb, yb = x[k * batch:(k + 1) * batch], y[k * batch:(k + 1) * batch]
        hybrid.step(lambda: F.cross_entropy(ddp(xb), yb))
    drift = replica_max_abs_diff(model.parameters())
    if info.is_main:
        s = hybrid.summary()
        print(f"{info.world_size} ranks: {s['steps']} steps, {s['backward_passes']} backward "
              f"passes, {s['predicted_steps']} predicted; replicas differ by {drift}")
    hybrid.close()
    ddp = hybrid = None      # DDP's reducer holds the process group: release it first
    shutdown()               # barrier, then destroy the group while Python is fully alive


if __name__ == "__main__":
    main()
