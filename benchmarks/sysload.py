"""How much CPU other processes used during a run, and this process's memory peak.

Why: on a shared 2-core machine another busy process can make a step 5-100x slower, and it
hits whichever method happens to be running. Each run therefore records the cores used by
everybody else (busy time from ``/proc/stat`` minus this process's own CPU time from
``getrusage``), and the harness repeats a run that saw more than a threshold. Peak memory is
the resident-set high-water mark (``VmHWM``), reset before each run where the kernel allows.
"""
from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_STAT = Path("/proc/stat")
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _busy_seconds() -> float | None:
    """Machine-wide non-idle CPU seconds since boot (all cores), or None off Linux."""
    try:
        with _STAT.open() as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    # already inside user, so only the first eight count.
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICKS


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadMeter:
    """Measures other processes' CPU use (in cores) between :meth:`start` and :meth:`stop`."""

    _busy0: float | None = None
    _own0: float = 0.0
    _wall0: float = 0.0

    def start(self) -> None:
        self._busy0 = _busy_seconds()
        self._own0 = _own_cpu_seconds()
        self._wall0 = time.perf_counter()

    def stop(self) -> dict[str, float | None]:
        """``other_cores``: mean cores busy with other work; ``own_cores``: this process."""
        wall = max(time.perf_counter() - self._wall0, 1e-9)
        own = _own_cpu_seconds() - self._own0
        busy1 = _busy_seconds()
        other = None
        if busy1 is not None and self._busy0 is not None:
            # Jiffy resolution (10 ms) can push a tiny difference below zero.
            other = max(0.0, (busy1 - self._busy0 - own) / wall)
        return {"other_cores": other, "own_cores": own / wall, "wall_s": wall}


def rss_mb() -> float | None:
    """Current resident set size of this process in MiB (None off Linux)."""
    return _status_field("VmRSS")


def peak_rss_mb() -> float | None:
    """High-water mark of the resident set since the last :func:`reset_peak_rss`."""
    return _status_field("VmHWM")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _status_field(name: str) -> float | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else None
