"""Statistics of the bench's samples: quantiles, distributions in microseconds, slopes, RSS.

Quantiles interpolate linearly between ranks (``_util.quantile``); a sample with no values has a
quantile of NaN here rather than an error, so a scenario cut short still gets its row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..._util import quantile, rss_bytes

# Where RSS comes from elsewhere, ``_util.rss_bytes`` gives the peak, whose slope says nothing.
_CURRENT_RSS = os.path.exists("/proc/self/statm")


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


def quantile_of(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of unsorted values; NaN for no values."""
    return quantile(sorted(values), q) if values else float("nan")


def median(values: Sequence[float]) -> float:
    """The median of unsorted values; NaN for no values."""
    return quantile_of(values, 0.5)


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


def current_rss() -> int | None:
    """This process's resident set size now (Linux ``/proc/self/statm``), else None."""
    return rss_bytes() if _CURRENT_RSS else None
