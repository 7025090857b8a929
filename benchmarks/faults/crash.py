"""SIGKILL during ``trainer.save`` and in the middle of training, then resume.

One run folder, one checkpoint path, many short-lived training processes
(:mod:`.worker`). Each process resumes from the checkpoint, trains and saves; the parent kills
it with SIGKILL either *during a save* (it waits for the worker's "save begins" line, then a
random delay drawn from the measured save duration) or *anywhere* (a random moment of the
process's life). After every kill the parent checks, with a fresh trainer:

- the checkpoint loads (``weights_only=True``, format, version and SHA-256 digest checked);
- it is *complete and exact*: its weights equal, bit for bit, those of an uninterrupted
  in-process run after the same number of steps, and that number is no older than the last
  save the worker reported finished;
- every temp file an interrupted save left behind is either refused with ``CheckpointError``
  or is itself a complete, exact state (killed between fsync and rename); none is ever taken
  for a good checkpoint by mistake, and ``remove_stale_temps`` removes them.

Finally a last process runs to the end, and its final weights must equal the uninterrupted
run's bit for bit (CPU, one thread, ``cost_model="fixed"``).
"""
from __future__ import annotations

import hashlib
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hybrid_predict_trainer import CheckpointError
from hybrid_predict_trainer.checkpoint import load_checked, remove_stale_temps, stale_temps

from . import worker

ROOT = Path(__file__).resolve().parents[2]


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def reference(steps: int, hidden: int) -> list[str]:
    """Digest of the weights after 0..steps steps of an uninterrupted in-process run."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _opt, trainer = worker.build(hidden)
        data = worker.batches(steps)
        out = [_digest(trainer.flat.flatten())]
        for i in range(steps):
            trainer.step(worker.closure_for(model, data[i]))
            out.append(_digest(trainer.flat.flatten()))
        if any("restored" in t.reason for t in trainer.transitions):
            raise RuntimeError("the reference run restored a checkpoint; pick another workload")
    return out


class _Lines:
    """Line reader over a child's stdout with a deadline (no threads)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.buf, self.lines = proc, b"", []
        self.fd = proc.stdout.fileno()  # type: ignore[union-attr]

    def next(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.decode()
        self.lines.append(text)
        return text

    def drain(self) -> list[str]:
        rest = []
        while True:
            line = self.next(0.5)
            if line is None:
                return rest
            rest.append(line)


@dataclass
class CrashStats:
    kills: int = 0
    kills_during_save: int = 0
    kills_anywhere: int = 0
    kills_survived: int = 0
    landed_inside_save: int = 0
    loads_ok: int = 0
    loads_exact: int = 0
    no_older_than_last_save: int = 0
    temps_found: int = 0
    temps_refused: int = 0
    temps_complete: int = 0
    temps_mistaken: int = 0
    temps_removed: int = 0
    resumed_bit_identical: bool | None = None
    failures: list[str] = field(default_factory=list)
    save_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        secs = d.pop("save_seconds")
        d["mean_save_s"] = sum(secs) / len(secs) if secs else None
        return d


def _spawn(path: Path, steps: int, every: int, hidden: int, final: Path | None = None,
           quiet: bool = False) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "")
                                                       .split(os.pathsep) if p])
    cmd = [sys.executable, "-m", "benchmarks.faults.worker", "--path", str(path),
           "--steps", str(steps), "--every", str(every), "--hidden", str(hidden)]
    if final is not None:
        cmd += ["--final", str(final)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL if quiet else subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def _check_after_kill(path: Path, ref: list[str], last_done: int, stats: CrashStats,
                      hidden: int) -> None:
    import warnings
    if last_done > 0 or path.exists():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _m, _o, trainer = worker.build(hidden)
                trainer.load(path)
            stats.loads_ok += 1
            k = trainer.stats.steps
            if k < len(ref) and _digest(trainer.flat.flatten()) == ref[k]:
                stats.loads_exact += 1
            else:
                stats.failures.append(f"checkpoint after kill {stats.kills} (step {k}) differs "
                                      "from the uninterrupted run")
            if k >= last_done:
                stats.no_older_than_last_save += 1
            else:
                stats.failures.append(f"checkpoint after kill {stats.kills} holds step {k}, "
                                      f"older than the finished save of step {last_done}")
        except CheckpointError as exc:
            stats.failures.append(f"checkpoint after kill {stats.kills} did not load: {exc}")
    for tmp in stale_temps(path):
        stats.temps_found += 1
        try:
            state = load_checked(tmp)
        except CheckpointError:
            stats.temps_refused += 1
            continue
        # a temp that loads must be a complete, exact state (killed after fsync, before rename)
        steps = int(state["trainer"]["stats"]["steps"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _m, _o, trainer = worker.build(hidden)
            trainer.load_state_dict(state)
        if steps < len(ref) and _digest(trainer.flat.flatten()) == ref[steps]:
            stats.temps_complete += 1
        else:
            stats.temps_mistaken += 1
            stats.failures.append(f"temp file {tmp.name} loaded but is not a complete state")
    stats.temps_removed += len(remove_stale_temps(path, min_age_s=0))


def campaign(workdir: Path, kills_in_save: int = 20, kills_anywhere: int = 5,
             steps: int = 400, hidden: int = 256, seed: int = 0,
             timeout: float = 120.0, require_landed: bool = True) -> dict[str, Any]:
    """Run the kill campaign in ``workdir``; returns counts and failures (see module doc).

    Processes are killed until ``kills_in_save`` kills landed inside a save (the worker had
    not reported it finished) and ``kills_anywhere`` kills hit a random moment of training;
    kills aimed at a save that landed just after it still count as kills. With
    ``require_landed=False`` it stops after ``kills_in_save`` aimed kills, wherever they
    landed (bounded time, for the test suite)."""
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "checkpoint.pt"
    for old in [path, *stale_temps(path)]:
        old.unlink(missing_ok=True)
    ref = reference(steps, hidden)
    stats = CrashStats()
    last_done = 0
    mode = "warm"        # a first process finishes three saves, to time them
    attempts = 0
    limit = 4 * (kills_in_save + kills_anywhere) + 8
    while attempts < limit:
        if mode != "warm":
            need_save = (stats.landed_inside_save if require_landed
                         else stats.kills_during_save) < kills_in_save
            need_any = stats.kills_anywhere < kills_anywhere
            if not (need_save or need_any):
                break
            mode = ("save" if need_save and (not need_any or rng.random() < 0.8)
                    else "anywhere")
        attempts += 1
        every = 1 if mode in ("save", "warm") else 5
        proc = _spawn(path, steps, every, hidden)
        lines = _Lines(proc)
        killed = False
        aimed: int | None = None
        try:
            start = lines.next(timeout)
            if start is None or not start.startswith("S"):
                stats.failures.append(f"worker did not start: {start!r}")
                break
            if mode == "warm":
                while len(stats.save_seconds) < 3:
                    line = lines.next(timeout)
                    if line is None or line == "DONE":
                        break
                    last_done = _track(line, lines, stats, last_done)
                proc.send_signal(signal.SIGKILL)
                killed = True
            elif mode == "save":
                skip = rng.randint(0, 2)          # aim at the 1st, 2nd or 3rd save
                mean = (sum(stats.save_seconds) / len(stats.save_seconds)
                        if stats.save_seconds else 0.05)
                while True:
                    line = lines.next(timeout)
                    if line is None or line == "DONE":
                        break
                    last_done = _track(line, lines, stats, last_done)
                    if line.startswith("B"):
                        if skip == 0:
                            aimed = int(line.split()[1])
                            time.sleep(rng.uniform(0.0, 0.9 * mean))
                            proc.send_signal(signal.SIGKILL)
                            killed = True
                            break
                        skip -= 1
            else:
                # anywhere: a random moment of the next few dozen steps (saves every 5 steps)
                time.sleep(rng.uniform(0.0, 0.25))
                proc.send_signal(signal.SIGKILL)
                killed = proc.poll() is None or proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
            rest = lines.drain()
            for line in rest:
                last_done = _track(line, lines, stats, last_done)
            proc.stdout.close()  # type: ignore[union-attr]
        if "DONE" in lines.lines:
            killed = False
        if not killed:
            if "DONE" in lines.lines:
                break            # the run reached its end: no more steps to kill
            continue
        was_warm = mode == "warm"
        if was_warm:
            mode = "save"
        else:
            stats.kills += 1
            if mode == "save":
                stats.kills_during_save += 1
                if aimed is not None and not any(ln.split()[:2] == ["E", str(aimed)]
                                                 for ln in lines.lines):
                    stats.landed_inside_save += 1
            else:
                stats.kills_anywhere += 1
        failures_before = len(stats.failures)
        _check_after_kill(path, ref, last_done, stats, hidden)
        if not was_warm and len(stats.failures) == failures_before:
            stats.kills_survived += 1
        if last_done >= steps:
            break
    # finish the run without interruption and compare with the uninterrupted one
    final = workdir / "final.pt"
    final.unlink(missing_ok=True)
    proc = _spawn(path, steps, 5, hidden, final=final, quiet=True)
    try:
        proc.wait(timeout=max(timeout, 10.0 * steps))
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if final.exists():
        weights = torch.load(final, weights_only=True)
        stats.resumed_bit_identical = _digest(weights) == ref[steps]
        if not stats.resumed_bit_identical:
            stats.failures.append("the resumed run's final weights differ from the "
                                  "uninterrupted run's")
    else:
        stats.resumed_bit_identical = False
        stats.failures.append("the final process did not finish")
    out = stats.as_dict()
    out.update(steps=steps, hidden=hidden, seed=seed, checkpoint_bytes=(
        path.stat().st_size if path.exists() else None))
    return out


def _track(line: str, lines: _Lines, stats: CrashStats, last_done: int) -> int:
    """Follow B/E lines: a finished save moves ``last_done``; B->E pairs time the saves."""
    parts = line.split()
    if parts and parts[0] == "E":
        n, t_end = int(parts[1]), float(parts[2])
        for prev in reversed(lines.lines[:-1]):
            p = prev.split()
            if p and p[0] == "B" and int(p[1]) == n:
                stats.save_seconds.append(t_end - float(p[2]))
                break
        return max(last_done, n)
    return last_done
