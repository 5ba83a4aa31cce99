"""Fixed-memory histograms of nanosecond figures, whole-run and over a sliding window.

Rules:

- Fixed memory: a histogram is ``NBUCKETS`` integers whatever it has seen, and a sliding
  window is a ring of ``slots`` of them. No sample lists.
- Cheap: values are bucketed with integer operations (no floats, no ``bisect``), in batches
  (one call per slice of finished exchanges or per flush, not per value); percentiles and
  window sums use C-level ``map``/``accumulate`` over the bucket lists.
- A reported percentile is never below the exact one, and above it by less than a bucket's
  width (1/16 of its lower bound).
"""

from __future__ import annotations

import math
import sys
import threading
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from itertools import accumulate, repeat
from operator import add, sub
from typing import NamedTuple

#: Values below 32 get a bucket each; above, 16 linear sub-buckets per power of two (so a
#: bucket is at most 1/16 of its lower bound wide). The last bucket (2**44 ns, ~4.9 hours)
#: takes everything larger.
SUB_BITS = 4
MAX_BITS = 44
NBUCKETS = (MAX_BITS - SUB_BITS) * 16
_LAST = NBUCKETS - 1


def bucket_of(v: int) -> int:
    """The bucket index of ``v`` (negative values count as 0)."""
    if v < 32:
        return v if v > 0 else 0
    e = v.bit_length() - 5
    i = (e << 4) + (v >> e)
    return i if i < NBUCKETS else _LAST


def _lower(i: int) -> int:
    if i < 32:
        return i
    e = (i >> 4) - 1
    return ((i & 15) + 16) << e


#: Smallest and largest value of each bucket.
LOWER: tuple[int, ...] = tuple(_lower(i) for i in range(NBUCKETS))
UPPER: tuple[int, ...] = (*(LOWER[i + 1] - 1 for i in range(NBUCKETS - 1)), sys.maxsize)
_ZEROS = (0,) * NBUCKETS


class Summary(NamedTuple):
    """Percentiles of a histogram, in the histogram's unit (ns here)."""

    n: int
    mean: float
    p50: int
    p95: int
    p99: int
    max: int


_EMPTY = Summary(0, 0.0, 0, 0, 0, 0)


def _summary(counts: Sequence[int], n: int, total: int, mx: int) -> Summary:
    if n <= 0:
        return _EMPTY
    cum = list(accumulate(counts))
    return Summary(
        n,
        total / n,
        _rank_value(cum, n, 0.50, mx),
        _rank_value(cum, n, 0.95, mx),
        _rank_value(cum, n, 0.99, mx),
        mx,
    )


def _rank_value(cum: list[int], n: int, q: float, mx: int) -> int:
    """The highest value of the bucket holding the ``ceil(q*n)``-th smallest value, capped
    at the exact maximum: never below the exact percentile, above it by less than 1/16."""
    rank = max(1, math.ceil(q * n))
    return min(UPPER[bisect_left(cum, rank)], mx)


class Histogram:
    """Counts of non-negative integers in log-linear buckets; fixed memory."""

    __slots__ = ("counts", "max", "n", "total")

    def __init__(self) -> None:
        self.counts = list(_ZEROS)
        self.n = 0
        self.total = 0
        self.max = 0

    def record(self, v: int) -> None:
        if v < 32:
            i = v if v > 0 else 0
        else:
            e = v.bit_length() - 5
            i = (e << 4) + (v >> e)
            if i >= NBUCKETS:
                i = _LAST
        self.counts[i] += 1
        self.n += 1
        self.total += v
        if v > self.max:
            self.max = v

    def record_many(self, values: Sequence[int]) -> None:
        """``record`` each value: cheaper per value than ``record`` (one call for a batch)."""
        if not values:
            return
        counts = self.counts
        for v in values:
            b = v.bit_length()
            if b > 5 and v > 0:
                e = b - 5
                counts[(e << 4) + (v >> e) if b <= MAX_BITS else _LAST] += 1
            else:
                counts[v if v > 0 else 0] += 1
        self.n += len(values)
        self.total += sum(values)
        mx = max(values)
        if mx > self.max:
            self.max = mx

    def record_since(self, now: int, starts: Sequence[int]) -> None:
        """``record(now - s)`` for each start."""
        self.record_many(list(map(sub, repeat(now), starts)))

    def merge(self, other: Histogram) -> None:
        self.counts = list(map(add, self.counts, other.counts))
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def clear(self) -> None:
        self.counts[:] = _ZEROS
        self.n = self.total = self.max = 0

    def summary(self) -> Summary:
        return _summary(self.counts, self.n, self.total, self.max)

    def percentile(self, q: float) -> int:
        """The ``q`` quantile (0 < q <= 1); 0 when empty."""
        if self.n <= 0:
            return 0
        return _rank_value(list(accumulate(self.counts)), self.n, q, self.max)

    def cumulative(self, bounds: Sequence[int]) -> list[int]:
        """For each bound: how many values fell in buckets whose values are all <= bound."""
        cum = list(accumulate(self.counts))
        out = []
        for b in bounds:
            i = bisect_right(UPPER, b)
            out.append(cum[i - 1] if i else 0)
        return out


class WindowedHistogram:
    """A histogram over the whole run and over a sliding window of ``slots * slot_s``.

    Values go into the current slot only (one increment). ``rotate(now)`` retires the
    current slot into the run total and the window ring; the window's sum is kept up to
    date at rotation (add the new slot, subtract the expired one), so a query never sums
    the whole ring.
    """

    def __init__(self, slots: int, slot_s: float, now: float) -> None:
        self.slot_s = slot_s
        self.current = Histogram()
        self._ring: deque[Histogram] = deque()
        self._slots = slots
        self._window = Histogram()  # the retired slots still inside the window
        self._run = Histogram()  # every retired slot
        self._lock = threading.Lock()  # rotate (worker) against queries (any thread)
        self.slot_end = now + slot_s

    def record(self, v: int) -> None:
        self.current.record(v)

    def record_many(self, values: Sequence[int]) -> None:
        self.current.record_many(values)

    def rotate(self, now: float) -> bool:
        """Retire the current slot if its time is over; True if it did."""
        if now < self.slot_end:
            return False
        # Slots that passed without a tick (worker busy, process suspended) retire empty;
        # more of them than the ring holds changes nothing more.
        passed = int((now - self.slot_end) // self.slot_s) + 1
        with self._lock:
            for _ in range(min(passed, self._slots + 1)):
                self._retire()
        self.slot_end += passed * self.slot_s
        return True

    def _retire(self) -> None:
        slot = self.current
        self._run.merge(slot)
        self._window.merge(slot)
        self._ring.append(slot)
        if len(self._ring) < self._slots:
            self.current = Histogram()
            return
        old = self._ring.popleft()
        w = self._window
        w.counts = list(map(sub, w.counts, old.counts))
        w.n -= old.n
        w.total -= old.total
        old.clear()
        self.current = old  # fixed memory: the expired slot is the new current one

    def _combined(self, base: Histogram, window: bool) -> Summary:
        with self._lock:
            cur = self.current
            counts = list(map(add, base.counts, cur.counts))
            n = base.n + cur.n
            total = base.total + cur.total
            # The window's own max is not kept (it cannot be subtracted); its slots' are.
            ring = self._ring if window else (base,)
            mx = max([cur.max, *(h.max for h in ring)])
        return _summary(counts, n, total, mx)

    def window(self) -> Summary:
        """Percentiles over the window (the current slot included)."""
        return self._combined(self._window, True)

    def run(self) -> Summary:
        """Percentiles over the whole run."""
        return self._combined(self._run, False)

    def run_histogram(self) -> Histogram:
        """A copy of the whole-run histogram (for exposition)."""
        h = Histogram()
        with self._lock:
            h.merge(self._run)
            h.merge(self.current)
        return h
