"""The trainer's state: ``state_dict`` / ``load_state_dict`` and atomic checkpoint files.

Part of :class:`~hybrid_predict_trainer.trainer.HybridTrainer` (a mixin over the trainer's
state, set up in its ``__init__``). A checkpoint holds the model, the optimizer, the
predictor, the phase machine and the RNG, so a resumed run continues the same run.
"""
from __future__ import annotations

import copy
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import load_checked, save_atomic
from ..errors import CheckpointError
from ..phases import Phase, Transition
from .fit import check_fits
from .rng import global_rng_state, set_global_rng_state


class TrainerState:
    """Saving and restoring everything a resumed run needs."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically: model, optimizer, trainer, predictor,
        bandit and RNG states. Plain containers and tensors only (loads with weights_only)."""
        seg = {k: v for k, v in self._seg.items() if k != "ctx"}
        if "ctx" in self._seg:
            seg["ctx"] = torch.from_numpy(np.asarray(self._seg["ctx"], dtype=np.float64))
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_class": type(self.optimizer).__name__,
            "config": self.config.model_dump(),
            "predictor": {"name": getattr(self.predictor, "name", "custom"),
                          "state": self.predictor.state_dict()},
            "bandit": self.bandit.state_dict(),
            "trainer": {
                "phase": self.phase.value, "phase_steps": self._phase_steps,
                "numel": self.flat.numel,
                "stats": self.stats.state_dict(), "tracker": self.tracker.state_dict(),
                "gate": self.gate.state_dict(), "divergence": self.divergence.state_dict(),
                "prev": None if self._prev is None else self._prev.clone(),
                "update": None if self._update is None else self._update.clone(),
                "has_update": self._has_update,
                "snapshot": None if self._snapshot is None else self._snapshot.clone(),
                "snapshot_buffers": (None if self._snapshot_buffers is None
                                     else [b.clone() for b in self._snapshot_buffers]),
                "anchor": None if self._anchor is None else self._anchor.clone(),
                "seg": seg, "correct_pending": self._correct_pending,
                "last_delta": None if self._last_delta is None else self._last_delta.clone(),
                "accuracy": self._accuracy, "gate_warned": self._gate_warned,
                "auto_off_until": self._auto_off_until, "auto_off_reason": self._auto_off_reason,
                "segments_window": [list(x) for x in self._segments_window],
                **self._progress.state_dict(),
                "last_was_real": self._last_was_real,
                "residuals": list(self._residuals[-1000:]),
                "transitions": [t.to_dict() for t in self.transitions[-1000:]],
                "jumps": None if self.jumps is None else self.jumps.state_dict(),
                "jumps_off_until": self._jumps_off_until,
                "jumps_off_reason": self._jumps_off_reason,
                "jump_pending": self._jump_pending,
                "step_loss": self._step_loss,
                "unjumped": (self._scratch.clone() if self._jump_pending
                             and self._scratch is not None else None),
            },
            "rng": global_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`. All or nothing: when the state does not fit this
        model/trainer, everything is put back as it was and a CheckpointError says why."""
        backup, fatal = copy.deepcopy(self.state_dict()), self._fatal
        try:
            self._load_state(state)
        except Exception as exc:  # noqa: BLE001 - any malformed entry; the state is put back
            self._load_state(backup)
            self._fatal = fatal
            if isinstance(exc, CheckpointError):
                raise
            text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise CheckpointError(f"checkpoint: does not match this model/trainer ({text}); "
                                  "load it into the model and optimizer it was saved "
                                  "from") from None

    def _load_state(self, state: dict[str, Any]) -> None:
        check_fits(state, self.model, self.flat.numel, self.optimizer,
                   getattr(self.predictor, "name", "custom"))
        tr = state["trainer"]
        self._cur_valid = False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.predictor.load_state_dict(state["predictor"]["state"])
        self.bandit.load_state_dict(state["bandit"])
        self.phase = Phase(tr["phase"])
        self._phase_steps = int(tr["phase_steps"])
        self.stats.load_state_dict(tr["stats"])
        self.tracker.load_state_dict(tr["tracker"])
        self.gate.load_state_dict(tr["gate"])
        self.divergence.load_state_dict(tr["divergence"])
        if tr["prev"] is None:   # written with segments off: no real update was recorded
            self._prev = self._cur = self._update = None
        else:
            self._ensure_update_buffers()
            self._prev.copy_(tr["prev"])  # type: ignore[union-attr]
            self._update.copy_(tr["update"])  # type: ignore[union-attr]
        self._has_update = bool(tr["has_update"])
        for name in ("snapshot", "anchor"):
            src = tr[name]
            if src is None:
                setattr(self, f"_{name}", None)
            else:
                buf = getattr(self, f"_{name}")
                if buf is None:
                    buf = self.flat.new_buffer()
                    setattr(self, f"_{name}", buf)
                buf.copy_(src)
        self._snapshot_buffers = self._checked_buffers(tr.get("snapshot_buffers"))
        seg = dict(tr["seg"])
        if "ctx" in seg:
            seg["ctx"] = seg["ctx"].numpy()
        self._seg = seg
        self._correct_pending = bool(tr["correct_pending"])
        self._last_delta = tr["last_delta"]
        self._accuracy = float(tr["accuracy"])
        self._gate_warned = bool(tr["gate_warned"])
        self._auto_off_until = tr["auto_off_until"]
        self._auto_off_reason = tr["auto_off_reason"]
        self._segments_window = deque((tuple(x) for x in tr["segments_window"]),
                                      maxlen=self._segments_window.maxlen)
        self._progress.load_state_dict(tr)
        self._last_was_real = bool(tr["last_was_real"])
        self._residuals = [float(x) for x in tr["residuals"]]
        if self.jumps is not None and tr.get("jumps") is not None:  # absent in old checkpoints
            self.jumps.load_state_dict(tr["jumps"])
        self._jumps_off_until = tr.get("jumps_off_until")
        self._jumps_off_reason = tr.get("jumps_off_reason")      # absent in older checkpoints
        self._jump_pending = bool(tr.get("jump_pending", False)) and self.jumps is not None
        step_loss = tr.get("step_loss")   # absent in older checkpoints: the check runs a forward
        self._step_loss = float(step_loss) if isinstance(step_loss, (int, float)) else None
        if self._jump_pending:
            if self._scratch is None:
                self._scratch = self.flat.new_buffer()
            self._scratch.copy_(tr["unjumped"])
        self.transitions = [Transition(int(t["step"]), Phase(t["src"]), Phase(t["dst"]),
                                       t["reason"], dict(t["numbers"])) for t in tr["transitions"]]
        set_global_rng_state(state["rng"])
        self._fatal = None

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (temp file, fsync, rename). Returns the path."""
        out = save_atomic(self.state_dict(), path)
        self._last_checkpoint = Path(out)
        return out

    def load(self, path: str | Path) -> None:
        """Load a checkpoint written by :meth:`save` (``weights_only=True``, refused otherwise)."""
        state = load_checked(path, map_location=self.flat.device)
        self.load_state_dict(state)
        self._last_checkpoint = Path(path)
