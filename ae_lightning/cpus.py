"""How many cores other processes are using now, so that training does not fight them for a core.

Torch starts one OpenMP thread per core. When another process holds a core, the thread that shares
it is descheduled while the others wait for it at every parallel region: on a 2-core machine with
one core held, an epoch took 7x longer at 2 threads than at 1 (docs/benchmarks.md, "A busy core").
Idle, 2 threads are 1.5x faster than 1, so no one setting is best in both: the condition is measured
when a run starts. Linux only (``/proc/stat``); elsewhere nothing is measured. A leaf: no torch.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def _times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs together since boot; None without /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(seconds: float = 0.1) -> float:
    """Cores busy with other processes over ``seconds`` (this one sleeps meanwhile); 0 if unknown."""
    first = _times()
    time.sleep(seconds)
    second = _times()
    if first is None or second is None or second[1] <= first[1]:
        return 0.0
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def free_threads(threads: int, busy: float) -> int:
    """The torch threads that fit beside ``busy`` cores of other processes (at least 1)."""
    return max(1, min(threads, (os.cpu_count() or 1) - round(busy)))
