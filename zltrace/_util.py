"""Small helpers that several stages share: quantiles, the process's RSS, fork-safe locks.

A leaf: it imports nothing of ours, so any stage (capture, pipeline, monitor, read side,
bench) may use it without tying itself to another.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[int], percent: float) -> int:
    """The nearest-rank percentile of already sorted values (the smallest value covering it)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent!r}")
    rank = math.ceil(percent / 100 * len(sorted_values))
    return sorted_values[max(rank, 1) - 1]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (``q`` in [0, 1])."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux), else its peak; None if unknown."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class ForkSafeLock:
    """A ``threading.Lock`` that a forked child gets back unlocked.

    Another thread may hold the lock at ``fork()``; in the child that thread does not exist,
    so the lock would never be released. Every instance is replaced by a fresh lock in the
    child (one ``os.register_at_fork`` hook for all of them).
    """

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _fork_safe.add(self)

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        self._lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def _renew(self) -> None:
        self._lock = threading.Lock()


_fork_safe: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _renew_all_in_child() -> None:
    for lock in list(_fork_safe):
        lock._renew()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_all_in_child)
