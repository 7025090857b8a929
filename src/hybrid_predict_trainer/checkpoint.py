"""Atomic, safe, verified checkpoint files.

Why this discipline:
- *Atomic*: a crash (kill -9, power loss, full disk) during ``save`` must never leave a partial
  file under the checkpoint's name. We write a temp file ``.NAME.XXXXXXXX.tmp`` in the same
  directory, fsync it, ``os.replace`` it over the target (atomic on POSIX), then fsync the
  directory. A crash leaves at most that temp file behind; it never has the checkpoint's name,
  and :func:`remove_stale_temps` (called after every successful save for temps over an hour
  old) deletes such leftovers.
- *Safe*: ``torch.load`` of an arbitrary pickle can execute code. We only ever load with
  ``weights_only=True`` and refuse anything else with a clear error.
- *Verified*: a SHA-256 digest of every value (tensor bytes, dtypes, shapes, keys, numbers) is
  stored in the file and checked on load, so a flipped bit in a tensor is refused instead of
  silently training on corrupted weights (the zip container alone does not check this).
- *Self-describing*: a format tag and version, checked on load, so a foreign or future file is
  refused with a message instead of failing deep inside ``load_state_dict``.
- *Private by default*: files and the folders we create get the user's umask, and are never
  world-writable even under ``umask 000``.

Every error is a :class:`~hybrid_predict_trainer.errors.CheckpointError` with one line that
names the file, the cause and what to do.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

FORMAT = "hybrid-predict-trainer"
VERSION = 2                 # 2: adds the "integrity" digest
READABLE_VERSIONS = (1, 2)  # 1: written before the digest existed (loaded without the check)
STALE_TEMP_AGE_S = 3600.0   # temps this old are leftovers of a crashed save, never in flight

_META_KEYS = ("format", "version", "integrity")
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")


def save_atomic(obj: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` to ``path`` atomically. On any error the old file (if any) is untouched,
    no temp file is left behind, and a :class:`CheckpointError` names the path and the cause."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint: expected a dict of state to save, got "
                              f"{type(obj).__name__}; pass trainer.state_dict()")
    target = Path(path)
    if target.name in ("", ".", ".."):
        raise CheckpointError(f"checkpoint: '{target}' is a folder, not a file name; save to "
                              "e.g. runs/my-run/checkpoint.pt")
    if target.is_dir():
        raise CheckpointError(f"checkpoint: '{target}' is an existing folder; save to a file "
                              f"inside it, e.g. '{target / 'checkpoint.pt'}'")
    directory = target.parent if str(target.parent) else Path(".")
    umask = _current_umask()
    try:
        _make_dirs(directory, umask)
    except OSError as exc:
        raise CheckpointError(f"checkpoint: cannot create folder '{directory}': {_cause(exc)}; "
                              "choose a writable path") from None
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    payload.update((k, v) for k, v in obj.items() if k not in _META_KEYS)
    payload["integrity"] = {"sha256": state_digest(payload)}
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CheckpointError(f"checkpoint: could not write '{target}': {_cause(exc)}; the "
                              "previous checkpoint is intact and training state was not "
                              "changed") from None
    sink = _Sink(fd)
    try:
        try:
            torch.save(payload, sink)
            sink.flush()
            os.fsync(fd)
        finally:
            sink.close()
        # mkstemp creates 0600 files; give the checkpoint the user's normal umask permissions,
        # but never write permission for everyone
        os.chmod(tmp, 0o666 & ~umask & ~0o002)
        os.replace(tmp, target)
        _fsync_dir(directory)
    except (OSError, RuntimeError) as exc:
        _silent_unlink(tmp)
        cause = sink.error or exc
        raise CheckpointError(f"checkpoint: could not write '{target}': {_cause(cause)} "
                              "(disk full or read-only?); the previous checkpoint is intact and "
                              "training state was not changed") from None
    except BaseException:
        _silent_unlink(tmp)
        raise
    remove_stale_temps(target, min_age_s=STALE_TEMP_AGE_S)
    return target


def load_checked(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic`, with ``weights_only=True`` only, and
    verify its format tag, version and integrity digest."""
    p = Path(path)
    if not p.is_file():
        hint = (" (a temp file of an interrupted save: load the checkpoint it was meant to "
                "replace)" if _TEMP_RE.match(p.name) else "")
        raise CheckpointError(f"checkpoint: '{p}' does not exist or is not a file{hint}; "
                              "check the path (hpt train --resume takes the run folder)")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes torch raise
        text = str(exc)
        if "weights_only" in text or "Unsupported global" in text or "Unsupported operand" in text:
            raise CheckpointError(
                f"checkpoint: '{p}' holds Python objects that could execute code when "
                "unpickled; refused (only tensors and plain data are loaded). Re-save it with "
                "trainer.save().") from None
        raise CheckpointError(f"checkpoint: '{p}' is truncated or corrupted ({_short(exc)}); "
                              "use an earlier checkpoint") from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"checkpoint: '{p}' was not written by hybrid-predict-trainer "
                              "(no format tag); load it with torch.load and pass the state to "
                              "load_state_dict yourself")
    if obj.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint: '{p}' has format tag {_short_repr(obj['format'])}, "
                              f"not '{FORMAT}'; it was written by another program: load it "
                              "with that program")
    version = obj.get("version")
    if version not in READABLE_VERSIONS or type(version) is not int:
        raise CheckpointError(f"checkpoint: '{p}' has format version {_short_repr(version)}, "
                              f"this library reads versions {', '.join(map(str, READABLE_VERSIONS))}"
                              "; use the library version that wrote it")
    if version >= 2:
        integrity = obj.get("integrity")
        expected = integrity.get("sha256") if isinstance(integrity, dict) else None
        if not isinstance(expected, str):
            raise CheckpointError(f"checkpoint: '{p}' has no integrity digest (version "
                                  f"{version} files always do); the file was altered: use an "
                                  "earlier checkpoint")
        try:
            actual = state_digest(obj)
        except Exception as exc:  # noqa: BLE001 - a value no checkpoint can hold
            raise CheckpointError(f"checkpoint: '{p}' holds a value that cannot be verified "
                                  f"({_short(exc)}); use an earlier checkpoint") from None
        if actual != expected:
            raise CheckpointError(f"checkpoint: '{p}' failed its integrity check (the stored "
                                  "SHA-256 does not match the content: bytes were changed on "
                                  "disk); use an earlier checkpoint")
    return obj


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over every value of ``state`` except the format/version/integrity entries:
    keys, container shapes, numbers and strings by ``repr``, tensors by dtype, shape and raw
    bytes. Equal states give equal digests on any machine."""
    h = hashlib.sha256()
    items = [(k, v) for k, v in state.items() if k not in _META_KEYS]
    _feed(h, dict(items))
    return h.hexdigest()


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """``mkdir -p`` for run folders: new folders get ``0o777`` minus the umask, and never the
    world-write bit (even under ``umask 000``). Returns the folder."""
    folder = Path(path)
    _make_dirs(folder, _current_umask())
    return folder


def stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Temp files left by interrupted saves: for a checkpoint path, its own
    ``.NAME.XXXXXXXX.tmp`` files; for a folder, every such file in it."""
    p = Path(path)
    folder, name = (p, None) if p.is_dir() else (p.parent if str(p.parent) else Path("."), p.name)
    if not folder.is_dir():
        return []
    out = []
    for entry in folder.iterdir():
        m = _TEMP_RE.match(entry.name)
        if m and (name is None or m.group("name") == name) and entry.is_file():
            out.append(entry)
    return sorted(out)


def remove_stale_temps(path: str | os.PathLike[str], min_age_s: float = STALE_TEMP_AGE_S
                       ) -> list[Path]:
    """Delete the temp files of interrupted saves (see :func:`stale_temps`) whose last write is
    at least ``min_age_s`` seconds old; returns the deleted paths.

    A temp file is never a checkpoint: :func:`load_checked` only reads the final name, which
    ``os.replace`` sets atomically. ``min_age_s=0`` removes every temp: do that only when no
    other process is saving into the same folder (e.g. before resuming a run).
    """
    now = time.time()
    removed = []
    for tmp in stale_temps(path):
        try:
            if now - tmp.stat().st_mtime >= min_age_s:
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


# ---------------------------------------------------------------------------------- helpers
class _Sink:
    """A binary file over an fd that remembers the OS error of a failed write: torch's zip
    writer turns it into an opaque RuntimeError, and the user needs the real cause
    ('No space left on device')."""

    def __init__(self, fd: int) -> None:
        self._fh = os.fdopen(fd, "wb")
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def close(self) -> None:
        try:
            self._fh.close()
        except OSError as exc:
            self.error = self.error or exc
            raise


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            if t.layout is not torch.strided:
                t = t.to_dense()
            flat = t.to("cpu").contiguous().reshape(-1)
            h.update(memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}".encode())
        for v in obj:
            _feed(h, v)
    else:
        h.update(f"S{type(obj).__name__}:{obj!r};".encode())


def _current_umask() -> int:
    """The process umask, read without changing it where possible (``os.umask`` can only be
    read by setting it, which briefly exposes other threads' new files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _make_dirs(directory: Path, umask: int) -> None:
    """``mkdir -p`` whose new folders get the umask's mode, minus write for everyone."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        os.chmod(d, 0o777 & ~umask & ~0o002)
    if not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory))


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f" [{errno.errorcode.get(exc.errno, exc.errno)}]"
                               if exc.errno else "")
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
