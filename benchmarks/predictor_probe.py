"""How much of a real step does a re-applied update give? Measured on the full validation set.

MLP 784-256-10 on MNIST-5k, AdamW lr 1e-3, batch 128. At a few points of training it compares
the validation-loss drop of k more real steps with k re-applications of a candidate update
direction: an EMA of recent real updates (beta 0, 0.5, 0.9) or the mean of the last W updates
(W 10, 30, 60). The whole 1,000-example validation set scores each point, so no batch noise
enters. Run: ``python -m benchmarks.predictor_probe [--out DIR]`` (about a minute).
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from hybrid_predict_trainer.data import load_mnist5k

POINTS, KS = (30, 60, 100, 250, 399), (1, 2, 4, 8, 16)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/predictor_probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x, y = load_mnist5k()
    perm = torch.randperm(5000, generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    xtr, ytr, xva, yva = x[:4000], y[:4000], x[4000:], y[4000:]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    params = list(model.parameters())

    def flat() -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in params])

    def set_flat(v: torch.Tensor) -> None:
        i = 0
        with torch.no_grad():
            for p in params:
                p.copy_(v[i:i + p.numel()].view_as(p))
                i += p.numel()

    def val() -> float:
        with torch.no_grad():
            return float(F.cross_entropy(model(xva), yva))

    def step() -> None:
        idx = torch.randint(0, 4000, (128,), generator=gen)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    updates: list[torch.Tensor] = []
    rows = []
    for t in range(max(POINTS) + 1):
        before = flat()
        step()
        updates.append(flat() - before)
        if t not in POINTS:
            continue
        theta, l0, state = flat(), val(), copy.deepcopy(opt.state_dict())
        real = []
        for _ in range(max(KS)):
            step()
            real.append(l0 - val())
        set_flat(theta)
        opt.load_state_dict(state)
        gen_state = gen.get_state()
        cands: dict[str, torch.Tensor] = {}
        for beta in (0.0, 0.5, 0.9):
            e = torch.zeros_like(theta)
            for u in updates[-20:]:
                e = beta * e + (1 - beta) * u
            cands[f"ema beta={beta}"] = e
        for w in (10, 30, 60):
            cands[f"mean of last {w}"] = sum(updates[-w:]) / len(updates[-w:])
        for name, d in cands.items():
            drops = []
            for k in KS:
                set_flat(theta + k * d)
                drops.append(l0 - val())
            set_flat(theta)
            rows.append({"step": t, "candidate": name, "val_loss": l0,
                         "real_drop": [real[k - 1] for k in KS], "predicted_drop": drops})
        gen.set_state(gen_state)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps({"ks": KS, "rows": rows}, indent=1))
    lines = ["# Re-applied updates vs real steps (validation-loss drop, MNIST MLP, AdamW 1e-3)", "",
             f"k = {list(KS)}; a negative drop means the loss rose.", "",
             "| step | candidate | real drop (k steps) | predicted drop (k re-applications) |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['candidate']} | "
                     f"{', '.join(f'{v:+.4f}' for v in r['real_drop'])} | "
                     f"{', '.join(f'{v:+.4f}' for v in r['predicted_drop'])} |")
    (out / "probe.md").write_text("\n".join(lines) + "\n")
    print((out / "probe.md").read_text())


if __name__ == "__main__":
    main()
