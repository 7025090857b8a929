"""The Lightning mixin trains a real LightningModule; predicted steps run no backward."""
from __future__ import annotations

import csv
import warnings

import pytest
import torch
import torch.nn.functional as F

L = pytest.importorskip("lightning")

from hybrid_predict_trainer import Phase  # noqa: E402
from hybrid_predict_trainer.integrations.lightning import HybridMixin  # noqa: E402


class LitMLP(HybridMixin, L.LightningModule):
    hybrid_config = {"warmup_steps": 5, "full_steps": 3, "confidence_threshold": 0.0,
                     "auto_off": False, "cost_model": "fixed", "segments": True}

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                       torch.nn.Linear(32, 10))
        self.backward_calls = 0
        self.net[0].weight.register_hook(self._count)
        self.records: list[tuple[bool, bool, bool]] = []   # predicted, backward ran, moved

    def _count(self, grad: torch.Tensor) -> None:
        self.backward_calls += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def hybrid_loss(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def on_train_batch_start(self, batch, batch_idx):
        self._before = (self.backward_calls, self.net[0].weight.detach().clone())

    def on_train_batch_end(self, outputs, batch, batch_idx):
        calls, w = self._before
        r = self.hybrid_stats.last
        self.records.append((r.predicted, self.backward_calls > calls,
                             not torch.equal(w, self.net[0].weight)))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=2e-3)


def test_lightning_module_trains_with_predicted_steps_that_skip_backward(mnist_small, tmp_path):
    xtr, ytr, _, _ = mnist_small
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr),
                                         batch_size=50, shuffle=False)
    model = LitMLP()
    logger = L.pytorch.loggers.CSVLogger(tmp_path, name="lit")
    trainer = L.Trainer(max_steps=60, accelerator="cpu", devices=1, logger=logger,
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, loader)

    assert len(model.records) == 60 and trainer.global_step == 60   # one step per batch
    predicted = [r for r in model.records if r[0]]
    real = [r for r in model.records if not r[0]]
    assert predicted, "the gate never opened"
    assert all(not ran for _, ran, _ in predicted)           # no backward on predicted steps
    assert any(moved for _, _, moved in predicted)            # ... yet the weights moved
    assert all(ran for _, ran, _ in real)
    s = model.hybrid.summary()
    assert s["backward_passes"] == model.backward_calls == len(real)
    assert any(t.dst is Phase.PREDICT for t in model.hybrid.transitions)
    assert "hybrid:" in model.hybrid_report and "Training health" in model.hybrid_report

    rows = list(csv.DictReader(open(logger.log_dir + "/metrics.csv")))
    codes = {float(r["hybrid/phase_code"]) for r in rows if r.get("hybrid/phase_code")}
    assert {0.0, 1.0, 2.0} <= codes
    saved = [float(r["hybrid/backward_saved"]) for r in rows if r.get("hybrid/backward_saved")]
    assert saved[-1] == len(predicted)
    assert any(r.get("hybrid/findings_warning") not in (None, "") for r in rows)


def test_lightning_checkpoint_carries_the_hybrid_state(mnist_small, tmp_path):
    xtr, ytr, _, _ = mnist_small
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr),
                                         batch_size=50, shuffle=False)
    kw = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
              enable_checkpointing=False, enable_model_summary=False)
    first = LitMLP()
    t1 = L.Trainer(max_steps=15, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1.fit(first, loader)
        t1.save_checkpoint(tmp_path / "h.ckpt")
        second = LitMLP()
        t2 = L.Trainer(max_steps=25, **kw)
        t2.fit(second, loader, ckpt_path=tmp_path / "h.ckpt")
    assert t2.global_step == 25
    s1, s2 = first.hybrid.summary(), second.hybrid.summary()
    assert s2["steps"] == 25 and s2["segments"] >= s1["segments"] > 0
    assert [str(t) for t in second.hybrid.transitions[:len(first.hybrid.transitions)]] == \
        [str(t) for t in first.hybrid.transitions]


def test_a_module_that_keeps_training_step_is_refused():
    from hybrid_predict_trainer import ConfigError

    class Wrong(HybridMixin, L.LightningModule):
        def training_step(self, batch, batch_idx):
            return None

    with pytest.raises(ConfigError, match="rename it to hybrid_loss"):
        Wrong()
