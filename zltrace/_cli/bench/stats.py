"""Statistics of the bench's samples: quantiles, distributions in microseconds, slopes, RSS."""

from __future__ import annotations

import os
from collections.abc import Sequence


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of already sorted values (q in [0, 1])."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


def dist_us(values_ns: Sequence[int]) -> dict[str, float]:
    """p50/p95/p99 and friends of nanosecond values, in microseconds."""
    if not values_ns:
        return {"n": 0}
    s = sorted(v / 1000.0 for v in values_ns)
    return {
        "n": len(s),
        "p50": round(quantile(s, 0.50), 3),
        "p95": round(quantile(s, 0.95), 3),
        "p99": round(quantile(s, 0.99), 3),
        "mean": round(sum(s) / len(s), 3),
        "min": round(s[0], 3),
        "max": round(s[-1], 3),
    }


def median(values: Sequence[float]) -> float:
    return quantile(sorted(values), 0.5)


def quantile_of(values: Sequence[float], q: float) -> float:
    return quantile(sorted(values), q)


def slope_per_s(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0.0 with fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return 0.0
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux ``/proc/self/statm``), else None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
