"""The interleaved A/B method: one timed request, rounds of requests over the sides, summaries."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from time import perf_counter_ns, thread_time_ns
from typing import Any

from .plan import MB, STREAM_AMT
from .sides import Side
from .stats import dist_us, median, quantile_of


def fetch(pool: Any, path: str) -> tuple[int, int, int, int]:
    """One request, body read to the end: (ttfb_ns, ttlb_ns, caller_cpu_ns, body_bytes)."""
    c0 = thread_time_ns()
    t0 = perf_counter_ns()
    r = pool.urlopen("GET", path, preload_content=False, retries=False)
    first = 0
    n = 0
    for chunk in r.stream(STREAM_AMT):
        if not first:
            first = perf_counter_ns()
        n += len(chunk)
    end = perf_counter_ns()
    c1 = thread_time_ns()
    r.release_conn()
    if r.status != 200:
        raise RuntimeError(f"bench server answered {r.status} to {path}")
    return (first or end) - t0, end - t0, c1 - c0, n


class Samples:
    """Per-side timings of one interleaved run (index 0 is the bare side)."""

    def __init__(self, k: int) -> None:
        self.ttfb: list[list[int]] = [[] for _ in range(k)]
        self.ttlb: list[list[int]] = [[] for _ in range(k)]
        self.cpu: list[list[int]] = [[] for _ in range(k)]
        self.body_bytes = [0] * k
        self.elapsed_s = 0.0

    @property
    def n(self) -> int:
        """Rounds completed."""
        return len(self.ttlb[0])

    def added(self, which: str, side: int) -> list[int]:
        """Per round: side ``side`` minus the bare side, of ``ttfb``, ``ttlb`` or ``cpu``."""
        series = getattr(self, which)
        return [t - b for t, b in zip(series[side], series[0])]


def interleave(
    sides: Sequence[Side],
    path: str,
    *,
    pairs: int | None = None,
    duration_s: float | None = None,
    rate_mbps: float | None = None,
    body_size: int = 0,
) -> Samples:
    """Rounds of one request per side, the order rotating every round.

    With ``rate_mbps``, rounds start at random (Poisson) times whose mean rate makes one side's
    body traffic that rate (mean gap ``body_size / rate``): evenly spaced starts would lock in
    phase with the worker's own timers. A round that starts late does not make up for it.
    """
    k = len(sides)
    s = Samples(k)
    mean_gap_s = body_size / (rate_mbps * MB) if rate_mbps else 0.0
    rng = random.Random(0x2B3)
    start = perf_counter_ns()
    deadline = start + int(duration_s * 1e9) if duration_s is not None else None
    next_t = start
    i = 0
    while True:
        if pairs is not None and i >= pairs:
            break
        if deadline is not None and perf_counter_ns() >= deadline:
            break
        if mean_gap_s:
            gap_ns = int(rng.expovariate(1.0 / mean_gap_s) * 1e9)
            now = perf_counter_ns()
            if next_t > now:
                time.sleep((next_t - now) / 1e9)
                next_t += gap_ns
            else:
                next_t = now + gap_ns
        for j in range(k):
            idx = (i + j) % k
            ttfb, ttlb, cpu, nbytes = fetch(sides[idx].pool, path)
            s.ttfb[idx].append(ttfb)
            s.ttlb[idx].append(ttlb)
            s.cpu[idx].append(cpu)
            s.body_bytes[idx] += nbytes
            sides[idx].count(1, nbytes)
        i += 1
    s.elapsed_s = (perf_counter_ns() - start) / 1e9
    return s


def warm(sides: Sequence[Side], path: str, n: int) -> None:
    """Untimed rounds over the sides: connections open, code paths and caches warm."""
    for _ in range(n):
        for side in sides:
            _, _, _, nbytes = fetch(side.pool, path)
            side.count(1, nbytes)


def diff_of_quantiles(traced_ns: Sequence[int], bare_ns: Sequence[int]) -> dict[str, float]:
    """p50/p95/p99 of one sample minus the same quantile of the other, in microseconds.

    The verdicts' statistic: a per-pair difference cancels the worker's deferred work out of
    the pairs when it lands on the bare request that runs next; the two samples' quantiles
    keep it where it fell.
    """
    if not traced_ns or not bare_ns:
        return {"n": 0}
    return {
        "n": min(len(traced_ns), len(bare_ns)),
        **{
            f"p{round(q * 100)}": round(
                (quantile_of(traced_ns, q) - quantile_of(bare_ns, q)) / 1000, 3
            )
            for q in (0.5, 0.95, 0.99)
        },
    }


def summarise(s: Samples, side: int) -> dict[str, Any]:
    """Distributions of one interleaved run, side ``side`` against the bare side 0."""
    ttlb_t, ttlb_b = s.ttlb[side], s.ttlb[0]
    return {
        # Difference of the two samples' quantiles: what the verdict lines use.
        "diff_ttlb_us": diff_of_quantiles(ttlb_t, ttlb_b),
        "diff_ttfb_us": diff_of_quantiles(s.ttfb[side], s.ttfb[0]),
        # Per pair (traced - bare of one round): INFO lines.
        "pairs": s.n,
        "elapsed_s": round(s.elapsed_s, 3),
        "bare_ttlb_us": dist_us(ttlb_b),
        "traced_ttlb_us": dist_us(ttlb_t),
        "added_ttlb_us": dist_us(s.added("ttlb", side)),
        "added_ttfb_us": dist_us(s.added("ttfb", side)),
        "bare_ttfb_us": dist_us(s.ttfb[0]),
        "traced_ttfb_us": dist_us(s.ttfb[side]),
        # The other way to cancel drift: the difference of the two sides' medians.
        "diff_of_medians_ttlb_us": round((median(ttlb_t) - median(ttlb_b)) / 1000, 3),
        "diff_of_p95_ttlb_us": round(
            (quantile_of(ttlb_t, 0.95) - quantile_of(ttlb_b, 0.95)) / 1000, 3
        ),
        "diff_of_p99_ttlb_us": round(
            (quantile_of(ttlb_t, 0.99) - quantile_of(ttlb_b, 0.99)) / 1000, 3
        ),
        "caller_cpu_added_us": dist_us(s.added("cpu", side)),
        "achieved_body_mbps": round(s.body_bytes[side] / s.elapsed_s / MB, 1)
        if s.elapsed_s
        else 0.0,
    }
