"""Atomic, safe checkpoint files.

Why this discipline:
- *Atomic*: a crash (kill -9, power loss, full disk) during ``save`` must never leave a partial
  file under the checkpoint's name. We write a temp file in the same directory, fsync it,
  ``os.replace`` it over the target (atomic on POSIX), then fsync the directory.
- *Safe*: ``torch.load`` of an arbitrary pickle can execute code. We only ever load with
  ``weights_only=True`` and refuse anything else with a clear error.
- *Self-describing*: a format tag and version, checked on load, so a foreign or future file is
  refused with a message instead of failing deep inside ``load_state_dict``.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

FORMAT = "hybrid-predict-trainer"
VERSION = 1


def save_atomic(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` to ``path`` atomically. On any error the old file (if any) is untouched."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"checkpoint: cannot create folder '{directory}': "
                              f"{exc.strerror or exc}; choose a writable path") from None
    payload = {"format": FORMAT, "version": VERSION, **obj}
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; give the checkpoint the user's normal umask permissions
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
        _fsync_dir(directory)
    except OSError as exc:
        _silent_unlink(tmp)
        raise CheckpointError(f"checkpoint: could not write '{target}': {exc.strerror or exc} "
                              "(disk full or read-only?); the previous checkpoint is intact and "
                              "training state was not changed") from None
    except BaseException:
        _silent_unlink(tmp)
        raise
    return target


def load_checked(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic`, with ``weights_only=True`` only."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint: '{p}' does not exist or is not a file; "
                              "check the path (hpt train --resume takes the run folder)")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"checkpoint: '{p}' holds Python objects that could execute code when "
                "unpickled; refused (only tensors and plain data are loaded). Re-save it with "
                "trainer.save().") from None
        raise CheckpointError(f"checkpoint: '{p}' is corrupted ({_short(exc)}); "
                              "use an earlier checkpoint") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint: '{p}' is truncated or corrupted ({_short(exc)}); "
                              "use an earlier checkpoint") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: '{p}' was not written by hybrid-predict-trainer "
                              "(no format tag); load it with torch.load and pass the state to "
                              "load_state_dict yourself")
    version = obj.get("version")
    if version != VERSION:
        raise CheckpointError(f"checkpoint: '{p}' has format version {version!r}, this library "
                              f"reads version {VERSION}; use the library version that wrote it")
    return obj


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _silent_unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
