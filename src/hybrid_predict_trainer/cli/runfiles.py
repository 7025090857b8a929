"""The run folder: what ``hpt train`` writes and ``hpt train --resume`` / ``hpt report`` read.

    RUN_DIR/
      config.toml            copy of the config the run was started with
      state.json             where the run is: status, data position, latest checkpoint
      metrics.jsonl          one JSON line per step, plus eval / resume / summary records
      checkpoints/step-00000120.pt       trainer.save(): model, optimizer, trainer, RNG
      checkpoints/step-00000120.run.pt   scheduler state and data position of that step
      summary.json, health.txt           end-of-run summary and the health monitor's report
      tensorboard/                       when [run] tensorboard = true

Why two files per checkpoint and a pointer: the trainer's checkpoint stays exactly what
``HybridTrainer.save`` writes (loadable without hpt), the run's own state sits beside it, and
``state.json`` is replaced atomically only after both exist, so a crash at any moment leaves
a consistent (older) checkpoint to resume from.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..checkpoint import load_checked, save_atomic
from ..distributed import restore_rank_rng
from ..errors import CheckpointError, ConfigError
from ..trainer import HybridTrainer

STATE_VERSION = 1


@dataclass
class Position:
    """How far a run got: epochs done, batches of the current epoch done, steps done, and the
    training time so far (validation and checkpoint time excluded)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    train_time_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Position":
        return cls(int(d["epoch"]), int(d["batch"]), int(d["step"]), float(d["train_time_s"]))


class RunFiles:
    """Paths of one run folder and the atomic writes into it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.toml"
        self.state = self.root / "state.json"
        self.metrics = self.root / "metrics.jsonl"
        self.checkpoints = self.root / "checkpoints"
        self.summary = self.root / "summary.json"
        self.health = self.root / "health.txt"
        self.tensorboard = self.root / "tensorboard"

    # ------------------------------------------------------------------ lifecycle
    def is_run(self) -> bool:
        return self.state.is_file()

    def clear(self) -> None:
        """Remove a previous run's files (only the ones hpt writes)."""
        for p in (self.state, self.metrics, self.summary, self.health, self.config):
            p.unlink(missing_ok=True)
        for folder in (self.checkpoints, self.tensorboard):
            if folder.is_dir():
                for f in sorted(folder.rglob("*"), reverse=True):
                    f.rmdir() if f.is_dir() else f.unlink()
                folder.rmdir()

    def start(self, config_text: str, config_dir: Path) -> None:
        """Create the folder, copy the config and write the first state."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(config_text, encoding="utf-8")
        self.write_state({"status": "running", "config_dir": str(config_dir),
                          "checkpoint": None, "position": Position().to_dict()})

    # ------------------------------------------------------------------ state
    def read_state(self) -> dict[str, Any]:
        if not self.state.is_file():
            raise ConfigError(f"--resume: '{self.root}' has no state.json, so it is not an hpt "
                              "run folder; pass the folder hpt train printed")
        try:
            state = json.loads(self.state.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--resume: '{self.state}' is unreadable ({exc}); restore it or "
                              "start a new run") from None
        if state.get("version") != STATE_VERSION:
            raise ConfigError(f"--resume: '{self.state}' has version {state.get('version')!r}, "
                              f"this hpt reads {STATE_VERSION}")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        _write_json_atomic(self.state, {"version": STATE_VERSION, **state})

    def update_state(self, **changes: Any) -> None:
        state = self.read_state()
        state.update(changes)
        state.pop("version", None)
        self.write_state(state)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, trainer: HybridTrainer, position: Position,
                        scheduler: Any = None, keep: int = 2,
                        rank_rng: list[dict[str, Any]] | None = None) -> Path:
        """Write the trainer checkpoint and its run sidecar, then point state.json at them.
        ``rank_rng``: every rank's RNG state under DDP (see ``distributed.rank_rng_states``)."""
        name = f"step-{position.step:08d}"
        ckpt = trainer.save(self.checkpoints / f"{name}.pt")
        save_atomic({"position": position.to_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "rank_rng": rank_rng},
                    self.checkpoints / f"{name}.run.pt")
        self.update_state(checkpoint=name, position=position.to_dict())
        self._prune(keep)
        return ckpt

    def load_checkpoint(self, trainer: HybridTrainer, scheduler: Any = None) -> Position:
        """Load the checkpoint state.json points at; returns the saved data position."""
        state = self.read_state()
        name = state.get("checkpoint")
        if not name:
            raise CheckpointError(f"--resume: '{self.root}' has no checkpoint yet (the run "
                                  "stopped before its first one); start it again with "
                                  "--overwrite")
        trainer.load(self.checkpoints / f"{name}.pt")
        side = load_checked(self.checkpoints / f"{name}.run.pt")
        if scheduler is not None and side.get("scheduler") is not None:
            scheduler.load_state_dict(side["scheduler"])
        restore_rank_rng(side.get("rank_rng"))      # rank r continues with rank r's RNG
        return Position.from_dict(side["position"])

    def _prune(self, keep: int) -> None:
        steps = sorted(p for p in self.checkpoints.glob("step-*.pt")
                       if not p.name.endswith(".run.pt"))
        for old in steps[:-keep]:
            old.unlink(missing_ok=True)
            old.with_name(old.stem + ".run.pt").unlink(missing_ok=True)


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=1, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write a JSON file atomically (NaN/inf become null so any reader can parse it)."""
    _write_json_atomic(path, _finite(obj))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
