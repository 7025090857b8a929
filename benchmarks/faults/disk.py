"""A full disk, a read-only folder and bad paths while ``trainer.save`` runs.

For each case a trainer is trained, saved once (the *previous* checkpoint), trained a few more
steps, and saved again while the fault is active. Required:

- a :class:`CheckpointError` on one line that names the path (its folder) and the cause
  ("No space left on device", "Read-only file system", ...);
- the trainer's complete state (weights, optimizer, predictor, RNG) is unchanged by the
  failed save, training continues, and a later save to a good path works and reloads exactly;
- the previous checkpoint is byte-for-byte intact and still loads; no temp file is left.

Faults: ENOSPC from ``write`` and from ``fsync`` (delayed allocation), EROFS when the temp file
is created and when it is renamed (simulated through the standard-library calls
``checkpoint.py`` uses, because tests run as root and chmod does not stop root); a parent path
that is a regular file and a target that is a folder (real); a real ``EFBIG`` from
``RLIMIT_FSIZE`` in a child process; and, with ``real_fs=True`` (root only, Linux), a real
full tmpfs and a real read-only tmpfs mount.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import torch
import torch.nn.functional as F

from hybrid_predict_trainer.checkpoint import load_checked, stale_temps, state_digest

from .fuzz import classify
from .workload import Workload

ROOT = Path(__file__).resolve().parents[2]


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))


class _FullDiskFile:
    """A binary file whose writes fail with ENOSPC after ``limit`` bytes."""

    def __init__(self, fh: Any, limit: int) -> None:
        self._fh, self._left = fh, limit

    def write(self, data: Any) -> int:
        n = len(memoryview(data))
        if n > self._left:
            raise _oserror(errno.ENOSPC)
        self._left -= n
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


@contextlib.contextmanager
def enospc_on_write(good: Path) -> Iterator[Path]:
    real = os.fdopen

    def fdopen(fd: int, *args: Any, **kw: Any) -> Any:
        return _FullDiskFile(real(fd, *args, **kw), 4096)
    with mock.patch.object(os, "fdopen", fdopen):
        yield good


@contextlib.contextmanager
def enospc_on_fsync(good: Path) -> Iterator[Path]:
    def fsync(fd: int) -> None:
        raise _oserror(errno.ENOSPC)
    with mock.patch.object(os, "fsync", fsync):
        yield good


@contextlib.contextmanager
def erofs_on_create(good: Path) -> Iterator[Path]:
    def mkstemp(*args: Any, **kw: Any) -> Any:
        raise _oserror(errno.EROFS)
    with mock.patch.object(tempfile, "mkstemp", mkstemp):
        yield good


@contextlib.contextmanager
def erofs_on_rename(good: Path) -> Iterator[Path]:
    def replace(*args: Any, **kw: Any) -> None:
        raise _oserror(errno.EROFS)
    with mock.patch.object(os, "replace", replace):
        yield good


@contextlib.contextmanager
def parent_is_a_file(good: Path) -> Iterator[Path]:
    blocker = good.parent / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    yield blocker / "sub" / "checkpoint.pt"


@contextlib.contextmanager
def target_is_a_folder(good: Path) -> Iterator[Path]:
    folder = good.parent / "a-folder.pt"
    folder.mkdir(exist_ok=True)
    yield folder


@dataclass(frozen=True)
class DiskCase:
    name: str
    cause: str                      # text the message must contain
    inject: Callable[[Path], Any]


CASES = [
    DiskCase("disk full while writing (ENOSPC from write)", "No space left on device",
             enospc_on_write),
    DiskCase("disk full at fsync (ENOSPC, delayed allocation)", "No space left on device",
             enospc_on_fsync),
    DiskCase("read-only file system when the temp file is created (EROFS)",
             "Read-only file system", erofs_on_create),
    DiskCase("read-only file system at the atomic rename (EROFS)", "Read-only file system",
             erofs_on_rename),
    DiskCase("a parent of the path is a regular file (ENOTDIR)", "Not a directory",
             parent_is_a_file),
    DiskCase("the path is an existing folder", "is an existing folder", target_is_a_folder),
]


def _steps(trainer: Any, model: torch.nn.Module, batches: list[Any]) -> None:
    for xb, yb in batches:
        trainer.step(lambda xb=xb, yb=yb: F.cross_entropy(model(xb), yb))


def run_case(name: str, cause: str, inject: Callable[[Path], Any], workdir: Path
             ) -> dict[str, Any]:
    """Run one disk fault (see the module docstring for what is checked)."""
    workdir.mkdir(parents=True, exist_ok=True)
    wl = Workload(steps=40, hidden=16, monitor=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _opt, trainer = wl.build()
        data, _, _ = wl.data()
        _steps(trainer, model, data[:30])
        good = workdir / "run" / "checkpoint.pt"
        trainer.save(good)
        good_bytes = good.read_bytes()
        _steps(trainer, model, data[30:33])
        before = state_digest(trainer.state_dict())
        with inject(good) as target:
            out = classify(lambda: trainer.save(target), (str(Path(target).parent),))
        rec: dict[str, Any] = {"fault": name, "outcome": out.kind, "message": out.detail}
        rec["clear_error"] = (out.kind == "refused" and out.detail.startswith("CheckpointError")
                              and cause in out.detail)
        rec["state_unchanged"] = state_digest(trainer.state_dict()) == before
        rec["previous_intact"] = good.read_bytes() == good_bytes and _loads(good)
        rec["no_temp_left"] = not stale_temps(good) and not stale_temps(Path(target))
        try:
            _steps(trainer, model, data[33:36])
            trainer.save(good)
            _m, _o, fresh = wl.build()
            fresh.load(good)
            rec["continues"] = torch.equal(fresh.flat.flatten(), trainer.flat.flatten())
        except Exception as exc:  # noqa: BLE001 - recorded as a failure
            rec["continues"] = False
            rec["message"] += f" | continuing failed: {type(exc).__name__}: {exc}"
    rec["survived"] = all(rec[k] for k in ("clear_error", "state_unchanged", "previous_intact",
                                           "no_temp_left", "continues"))
    return rec


def _loads(path: Path) -> bool:
    try:
        load_checked(path)
        return True
    except Exception:  # noqa: BLE001
        return False


# ------------------------------------------------------------------ real kernel errors
@contextlib.contextmanager
def _fsize_limit(good: Path) -> Iterator[Path]:
    import resource
    import signal
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, hard))
    try:
        yield good
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def run_fsize_case_in_child(workdir: Path, timeout: float = 120.0) -> dict[str, Any]:
    """The EFBIG case in a child process (a file-size limit is process-wide)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "")
                                                       .split(os.pathsep) if p])
    proc = subprocess.run([sys.executable, "-m", "benchmarks.faults.disk", "--fsize-case",
                           str(workdir)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"fault": "file size limit (EFBIG)", "survived": False, "outcome": "crashed",
                "message": (proc.stderr or proc.stdout)[-500:]}


@contextlib.contextmanager
def _tmpfs(workdir: Path, size: str) -> Iterator[Path]:
    mnt = workdir / "tmpfs"
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                   check=True, capture_output=True)
    try:
        yield mnt
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(mnt)], capture_output=True)
        subprocess.run(["umount", str(mnt)], capture_output=True)


def real_fs_cases(workdir: Path) -> list[dict[str, Any]]:
    """A really full and a really read-only tmpfs (needs root and mount; else skipped)."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        return [{"fault": "real tmpfs cases", "skipped": "needs root and mount"}]
    out = []
    try:
        with _tmpfs(workdir, "2m") as mnt:
            @contextlib.contextmanager
            def fill(good: Path) -> Iterator[Path]:
                filler = mnt / "filler"
                with open(filler, "wb") as fh:
                    try:
                        while True:
                            fh.write(b"\0" * 65536)
                    except OSError:
                        pass
                try:
                    yield good
                finally:
                    filler.unlink()
            out.append(run_case("real full file system (tmpfs, ENOSPC)",
                                "No space left on device", fill, mnt / "case"))

        with _tmpfs(workdir, "8m") as mnt:
            @contextlib.contextmanager
            def readonly(good: Path) -> Iterator[Path]:
                subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True,
                               capture_output=True)
                try:
                    yield good
                finally:
                    subprocess.run(["mount", "-o", "remount,rw", str(mnt)], check=True,
                                   capture_output=True)
            out.append(run_case("real read-only file system (tmpfs remounted ro)",
                                "Read-only file system", readonly, mnt / "case"))
    except (subprocess.CalledProcessError, OSError) as exc:
        out.append({"fault": "real tmpfs cases", "skipped": f"mount failed: {exc}"})
    return out


def campaign(workdir: Path, real_fs: bool = False) -> list[dict[str, Any]]:
    out = [run_case(c.name, c.cause, c.inject, workdir / f"case{i}")
           for i, c in enumerate(CASES)]
    out.append(run_fsize_case_in_child(workdir / "fsize"))
    if real_fs:
        out.extend(real_fs_cases(workdir / "realfs"))
    return out


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--fsize-case":
        torch.set_num_threads(1)
        rec = run_case("file size limit, real kernel error (EFBIG)", "File too large",
                       _fsize_limit, Path(argv[1]))
        print(json.dumps(rec))
        return 0
    print("usage: python -m benchmarks.faults.disk --fsize-case DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
