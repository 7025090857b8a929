"""PyTorch Lightning: a mixin that runs a LightningModule's training with the hybrid trainer
(extra ``[lightning]``).

Why manual optimization: with Lightning's automatic optimization every batch runs forward,
backward and ``optimizer.step()``; a callback can only skip the *whole* batch. Predicted
steps must instead apply a forecast update with no backward, so the mixin switches the module
to manual optimization and lets :class:`~hybrid_predict_trainer.HybridTrainer` decide, per
batch, whether the loss runs with autograd and whether a backward and optimizer step follow.

    class LitMLP(HybridMixin, L.LightningModule):
        hybrid_config = {"warmup_steps": 20}

        def hybrid_loss(self, batch, batch_idx):          # replaces training_step
            x, y = batch
            return F.cross_entropy(self(x), y)

Every batch counts as one Lightning step (``max_steps`` means batches, as in plain training),
predicted or not. Learning-rate schedulers with ``interval="step"`` are stepped after every
batch and ``"epoch"`` ones at each epoch end, as Lightning would.
"""
from __future__ import annotations

from typing import Any

import torch

from ..config import HybridConfig
from ..distributed import auto_collective
from ..errors import ConfigError
from ..metrics import StepResult
from ..report.text import run_text_report
from ..trainer import HybridTrainer
from .scalars import RunningStats

_CKPT_KEY = "hybrid_predict_trainer"


class HybridMixin:
    """Mix into a ``LightningModule`` *before* it: ``class M(HybridMixin, L.LightningModule)``.

    Implement :meth:`hybrid_loss` instead of ``training_step``. Set ``hybrid_config`` (a
    :class:`HybridConfig` or dict) as a class attribute or in ``__init__``. After training,
    ``self.hybrid`` is the trainer (``summary()``, ``transitions``, ``monitor``) and
    ``self.hybrid_report`` the text of the end-of-run summary and health report.

    Logged with ``self.log`` on every step: ``hybrid/loss``, ``hybrid/phase_code``
    (0 warmup, 1 full, 2 predict, 3 correct), ``hybrid/predicted``, ``hybrid/backward_saved``,
    ``hybrid/speedup_estimate``, ``hybrid/confidence`` (when known), ``hybrid/rollbacks``;
    at each epoch end: ``hybrid/predicted_fraction``, ``hybrid/segments`` and the health
    monitor's finding counts ``hybrid/findings_warning`` and ``hybrid/findings_error``.
    """

    hybrid_config: HybridConfig | dict[str, Any] | None = None
    hybrid_log_prog_bar: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if type(self).training_step is not HybridMixin.training_step:
            raise ConfigError(f"{type(self).__name__}: defines training_step, which would replace "
                              "the hybrid step (and train nothing under manual optimization); "
                              "rename it to hybrid_loss(self, batch, batch_idx) returning the "
                              "loss")
        self.automatic_optimization = False
        self.hybrid: HybridTrainer | None = None
        self.hybrid_stats = RunningStats()
        self.hybrid_report: str | None = None
        self._hybrid_pending: dict[str, Any] | None = None

    # ------------------------------------------------------------------ user contract
    def hybrid_loss(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Return the scalar training loss of ``batch`` (forward only: no backward, no step).

        It may run several times per batch (the trainer's paired checks) or not at all (on a
        predicted step that is not checked); keep it free of side effects other than the
        forward pass.
        """
        raise NotImplementedError(f"{type(self).__name__}: implement hybrid_loss(self, batch, "
                                  "batch_idx) returning the loss (it replaces training_step)")

    # ------------------------------------------------------------------ Lightning hooks
    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self.automatic_optimization:
            raise ConfigError("automatic_optimization: HybridMixin needs it False (the trainer "
                              "decides when backward runs); do not set it back to True")
        trainer = self._hybrid_trainer()
        lopt = self._lightning_optimizer()
        lopt._on_before_step()    # count this batch as one Lightning step (predicted or not)
        result = trainer.step(lambda: self.hybrid_loss(batch, batch_idx))
        lopt._on_after_step()
        self.hybrid_stats(result)
        self._log_step(result)
        self._step_schedulers("step")
        if trainer.should_stop:
            self.trainer.should_stop = True

    def on_train_epoch_end(self) -> None:
        self._step_schedulers("epoch")
        if self.hybrid is None:
            return
        s = self.hybrid.summary()
        figures = {"hybrid/predicted_fraction": float(s["predicted_fraction"]),
                   "hybrid/segments": float(s["segments"])}
        health = s.get("health") or {}
        counts = health.get("counts", {})
        figures["hybrid/findings_warning"] = float(counts.get("warning", 0))
        figures["hybrid/findings_error"] = float(counts.get("error", 0))
        self.log_dict(figures, on_step=False, on_epoch=True)

    def on_train_end(self) -> None:
        if self.hybrid is None:
            return
        self.hybrid_report = run_text_report(self.hybrid)
        from lightning.pytorch.utilities import rank_zero_info
        rank_zero_info(self.hybrid_report)

    def on_fit_end(self) -> None:
        if self.hybrid is not None:
            self.hybrid.close()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.hybrid is not None:
            checkpoint[_CKPT_KEY] = self.hybrid.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._hybrid_pending = checkpoint.get(_CKPT_KEY)

    # ------------------------------------------------------------------ internals
    def _lightning_optimizer(self) -> Any:
        opts = self.optimizers()
        if isinstance(opts, (list, tuple)):
            if len(opts) != 1:
                raise ConfigError(f"configure_optimizers: HybridMixin drives one optimizer, "
                                  f"got {len(opts)}; return a single optimizer")
            opts = opts[0]
        if not hasattr(opts, "_on_before_step"):
            raise ConfigError("lightning: this Lightning version has no manual step counter "
                              "hooks (LightningOptimizer._on_before_step); use lightning>=2.2")
        return opts

    def _hybrid_trainer(self) -> HybridTrainer:
        if self.hybrid is not None:
            return self.hybrid
        if self.trainer.world_size > 1:
            raise ConfigError(
                "lightning: HybridMixin runs on one device; for several processes use the "
                "plain loop with torchrun (docs/distributed.md)")
        cfg = self.hybrid_config
        if isinstance(cfg, dict):
            cfg = HybridConfig.from_dict(cfg)
        elif cfg is not None and not isinstance(cfg, HybridConfig):
            raise ConfigError(f"hybrid_config: expected HybridConfig, dict or None, got "
                              f"{type(cfg).__name__}")
        raw = self._lightning_optimizer().optimizer
        self.hybrid = HybridTrainer(self, raw, cfg, collective=auto_collective())
        if self._hybrid_pending is not None:
            self.hybrid.load_state_dict(self._hybrid_pending)
            self.hybrid_stats = RunningStats.from_summary(self.hybrid.summary())
            self._hybrid_pending = None
        return self.hybrid

    def _log_step(self, r: StepResult) -> None:
        figures = {f"hybrid/{k}": v for k, v in self.hybrid_stats.scalars(r).items()
                   if k in ("loss", "phase_code", "predicted", "backward_saved",
                            "speedup_estimate", "confidence", "rollbacks")}
        shown = {"hybrid/loss", "hybrid/phase_code"} if self.hybrid_log_prog_bar else set()
        for name, value in figures.items():
            self.log(name, value, on_step=True, on_epoch=False, prog_bar=name in shown)

    def _step_schedulers(self, interval: str) -> None:
        for cfg in getattr(self.trainer, "lr_scheduler_configs", []) or []:
            if cfg.interval != interval:
                continue
            count = (self.trainer.global_step if interval == "step"
                     else self.trainer.current_epoch + 1)
            if count % max(int(cfg.frequency), 1) == 0:
                cfg.scheduler.step()

