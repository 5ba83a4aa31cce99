"""The tracer measuring itself: fixed-memory histograms and the :class:`PerformanceMonitor`.

Rules:

- The caller thread records nothing for the monitor: in zero-latency mode its whole cost
  is a ``perf_counter_ns`` and a ``SimpleQueue.put`` per event, and the monitor adds zero
  to that. Everything here runs on the worker thread (in standard mode, on the thread
  that writes), from figures the pipeline already has: the events' timestamps, the
  finished exchanges, the writer's counters, the worker's own slice timings.
- Fixed memory: a histogram is ``NBUCKETS`` integers whatever it has seen, and a sliding
  window is a ring of ``slots`` of them. No sample lists.
- Cheap: values are bucketed with integer operations (no floats, no ``bisect``), in batches
  (one call per slice of finished exchanges or per flush, not per value); percentiles and
  window sums use C-level ``map``/``accumulate`` over the bucket lists. Measured with
  ``timeit`` on the 2-core VM, CPython 3.11, load average ~2.5 from other test runs (3.9
  is 1.5-2x slower): ``Histogram.record_many`` 125-130 ns per value (``record`` alone
  ~190); ``finished`` ~195 ns per exchange -- its added time (a few integer operations and
  a cached bucket) plus noting its end for the lag; ``flushed`` ~155 ns per record (its
  lag); ``hold_ns`` 60 ns plus ~130 ns when folded. So each observation costs 150-200 ns of
  worker time, none of caller time. A tick is ~30 us once a second, plus the hook probe
  every ``slot_s`` (10 s): 0.13-0.15 ms back to back, 0.33-0.35 ms after an idle spell
  (cold caches), 16 rounds (the first probe ~0.1-0.3 ms more: it builds its classes and
  runs 8 rounds unmeasured); ``figures()`` in full ~75 us, for ``stats()`` and the
  endpoints.

What the figures mean (the caller's added time cannot be timed on the caller without
adding to it, so it is derived from a probe):

- The probe (``probe_hooks``, every ``slot_s``, on the worker -- in standard mode on the
  writing thread): the real code of each caller-thread hook, timed against a bare
  equivalent, at the interpreter's current speed (CPU contention, frequency scaling). The
  hooks every exchange goes through once (``fixed_hooks_ns``: the pool's
  ``_make_request`` starting the exchange, the ``send`` of the request head, the
  connection's ``response_class``, ``TracedResponse.begin``, ``Tee.close``, and urllib3
  1.26's ``urlopen`` override; each as ``fixed_<name>_ns``), and the hook of one body
  read (``hook_ns``: ``Tee.read`` over an in-memory file minus the file's own ``read``;
  its every round is in the ``chunk`` histogram). Each figure is the median of the last
  ``PROBES_KEPT`` (3) probes. On the VM, 1 KB GETs: ~3.0-3.3 us fixed + ~0.35 us per
  read (3.11, urllib3 2.x); ~4.5 + ~0.45 us (3.9, urllib3 1.26, its ``urlopen`` included).
- ``added`` per exchange: ``fixed_hooks_ns`` + ``hook_ns`` x body reads that delivered
  body bytes + ``send_hook_ns`` x request body pieces sent after the head. It is the
  tracer's own code on the caller thread, and only that. Not in it: the time a caller
  waits for the GIL while the worker holds it (the ``hold`` histogram is there for that),
  the worker waking up on its first event, reads of chunk framing (size lines), and the
  allocator: the body ``bytes`` the app got stay referenced until the worker has encoded
  them and are then freed on the worker thread, so the caller's next allocations come from
  colder memory. End to end (thread CPU time, 1 KB GETs on loopback, interleaved A/B,
  worker kept out) the tracer adds ~7.7 us of caller CPU per request, of which ~2-3 us is
  that allocator effect (by ablation), against ~3.3-3.7 us here (the figure was ~1.4 us
  when only the read hook was probed). ``python -m zltrace bench`` measures the
  end-to-end figure.
- ``lag``: from an exchange's last byte (its end timestamp, taken on the caller) to its
  line being written by the writer -- includes the flush interval by design.
- ``hold``: how long the worker held the GIL in one slice of work.
"""

from __future__ import annotations

import http.client
import io
import itertools
import logging
import math
import os
import queue
import sys
import threading
import time
import types
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from itertools import accumulate
from operator import add, sub
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from .alerts import AlertEngine, default_rules

if TYPE_CHECKING:
    from .._pipeline.assembler import Finished
    from ..config import Config

log = logging.getLogger("zltrace.monitor")

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
        """``record`` each value; for a batch, ~130 ns per value instead of ~190."""
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
        """``record(now - s)`` for each start (record_many inlined: once per record)."""
        if not starts:
            return
        counts = self.counts
        total = 0
        mx = self.max
        for s in starts:
            v = now - s
            b = v.bit_length()
            if b > 5 and v > 0:
                e = b - 5
                counts[(e << 4) + (v >> e) if b <= MAX_BITS else _LAST] += 1
            else:
                counts[v if v > 0 else 0] += 1
            total += v
            if v > mx:
                mx = v
        self.n += len(starts)
        self.total += total
        self.max = mx

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


class Gauges(NamedTuple):
    """What the monitor reads from the pipeline at each tick (the tracer supplies it)."""

    queue_depth: int = 0
    open_exchanges: int = 0
    memory_bytes: int = 0
    records_written: int = 0
    bytes_written: int = 0
    records_lost: int = 0
    write_errors: int = 0
    events: int = 0


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


# -- the hook probe ----------------------------------------------------------------------
#
# The probe times the capture side's real hook code, on this thread, against a bare
# equivalent: the traced classes are mixed in front of bases whose ``_make_request``,
# ``send`` and ``begin`` do nothing, so that only the hook's own code is in the difference
# (urllib3's and http.client's work is the same with or without the tracer, and timing it
# too would bury a ~1 us difference under ~10 us of header parsing and its noise).
#
# The hooks run with private state: their functions are rebuilt from their own code
# objects over a copy of their module's globals in which the exchange counter, the
# logical-request thread-local and the pending-response thread-local are the probe's own,
# and their events go to a private queue. So a probe takes no exchange numbers, and in
# standard mode -- where it runs on an application thread, possibly inside a request --
# it cannot disturb that thread's logical id or pending response.


class _ProbeSink:
    __slots__ = ("_put",)

    def __init__(self, put: Callable[[tuple[Any, ...]], None]) -> None:
        self._put = put


#: The hooks every exchange goes through once, in the order they run: (urllib3 1.26 only)
#: the pool's ``urlopen`` marking the logical request; ``_make_request`` starting the
#: exchange; the ``send`` of the request head; the connection's ``response_class``;
#: ``TracedResponse.begin`` reporting the head and installing the tee; ``Tee.close``.
FIXED_HOOKS = ("urlopen", "make_request", "send", "response_class", "begin", "close")

#: Rounds of each hook per probe (a round times the traced and the bare call once each).
PROBE_ROUNDS = 16
#: The figures are medians over this many latest probes: one probe that a burst of other
#: work slowed down (seen: 2x, on the 2-core VM) does not set them alone.
PROBES_KEPT = 3


class HookCosts(NamedTuple):
    """One probe's figures, in ns, measured on this machine at the interpreter's speed now."""

    #: Per round: one body read through the tee minus the bare file's read (median taken).
    read: list[int]
    #: Per name of :data:`FIXED_HOOKS`: median traced call minus median bare call, >= 0
    #: (0 for a hook this urllib3 does not have).
    fixed: dict[str, int]
    #: How long the probe itself took.
    took_ns: int


def _rebound(fn: Any, ns: dict[str, Any]) -> Any:
    """``fn``'s own code object over globals ``ns``: the real hook, the probe's state."""
    new = types.FunctionType(fn.__code__, ns, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    return new


def _probe_class(name: str, traced: type[Any], bare: type[Any], ns: dict[str, Any]) -> type[Any]:
    """``traced`` in front of ``bare``, with ``traced``'s functions rebound over ``ns``.

    The rebound functions keep their closure, so ``super()`` in them still means "after
    ``traced``" -- which is ``bare`` here.
    """
    attrs: dict[str, Any] = {}
    for key, value in vars(traced).items():
        if isinstance(value, types.FunctionType):
            attrs[key] = _rebound(value, ns)
        elif isinstance(value, property) and value.fget is not None:
            attrs[key] = property(_rebound(value.fget, ns))
    return type(name, (traced, bare), attrs)


class _BarePool:
    scheme = "http"
    host = "localhost"
    port = 80

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return None

    def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        return None


class _BareExplicitPool(_BarePool):
    """urllib3 2.x's ``_make_request`` signature: the bare call binds its keywords as the real
    one does (a ``**kwargs`` stub would charge the bare side for packing them)."""

    def _make_request(  # type: ignore[override]
        self,
        conn: Any,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        retries: Any = None,
        timeout: Any = None,
        chunked: bool = False,
        response_conn: Any = None,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
    ) -> Any:
        return None


class _BareConnection:
    response_class = http.client.HTTPResponse
    blocksize = 8192

    def send(self, data: Any) -> None:
        return None


class _BareResponse(http.client.HTTPResponse):
    def begin(self) -> None:
        return None


class _FakeSocket:
    """What ``HTTPResponse.__init__`` needs of a socket: a file holding a 2-byte body."""

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(b"ok")


class _ProbeKit:
    """The probe classes, built once per process (~0.2 ms) on first use."""

    def __init__(self) -> None:
        from .._capture import connection as _connection
        from .._capture import pool as _pool
        from .._capture import tee as _tee

        pool_ns = dict(vars(_pool))
        pool_ns["exchange_ids"] = itertools.count(1)
        pool_ns["logical"] = _pool._Logical()
        for name in ("enter_group", "leave_group"):
            if name in pool_ns:
                pool_ns[name] = _rebound(pool_ns[name], pool_ns)
        tee_ns = dict(vars(_tee))
        tee_ns["pending"] = _tee._Pending()
        conn_ns = dict(vars(_connection))
        conn_ns["pending"] = tee_ns["pending"]
        # The traced pool as traced_pool_class makes it for urllib3's own pool class.
        self.bare_pool: type[_BarePool] = _BarePool
        if _pool._STOCK_EXPLICIT:
            self.bare_pool = _BareExplicitPool
        self.pool = _probe_class("ProbePool", _pool.TracedPoolMixin, self.bare_pool, pool_ns)
        if _pool._STOCK_EXPLICIT:
            self.pool._make_request = _rebound(_pool._make_request_explicit, pool_ns)
        self.has_urlopen = "urlopen" in vars(_pool.TracedPoolMixin)
        self.conn = _probe_class(
            "ProbeConnection", _connection.TracedConnectionMixin, _BareConnection, conn_ns
        )
        self.response = _probe_class("ProbeResponse", _tee.TracedResponse, _BareResponse, tee_ns)
        self.tee = _tee.Tee
        # What urllib3's urlopen passes to _make_request (2.x passes ``retries``).
        self.kwargs: dict[str, Any] = {"timeout": None, "body": None, "headers": {}}
        self.kwargs["chunked"] = False
        if pool_ns.get("_RETRIES_SEEN"):
            self.kwargs.update(
                retries=types.SimpleNamespace(history=()),
                response_conn=None,
                preload_content=True,
                decode_content=True,
                enforce_content_length=True,
            )


_kit: _ProbeKit | None = None

_HEAD = b"GET /probe HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: identity\r\n\r\n"


def _median(values: list[int]) -> int:
    return sorted(values)[len(values) // 2]


def probe_hooks(rounds: int = PROBE_ROUNDS) -> HookCosts:
    """Time the caller-thread hooks, ``rounds`` times each; see :class:`HookCosts`.

    Runs the real hook code (see the comment above) against a private queue; its duration
    is in the module docstring.
    """
    global _kit
    clock = perf_counter_ns
    start = clock()
    kit = _kit
    # The first probe may come before any request: its first rounds would time code that
    # the interpreter has not specialised yet (3.11+), so they are run and not counted.
    warm = 0
    if kit is None:
        kit = _kit = _ProbeKit()
        warm = 8
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sink = _ProbeSink(q.put)
    pool = kit.pool()
    pool._zl_tracer = sink
    bare_pool = kit.bare_pool()
    conn = kit.conn()
    bare_conn = _BareConnection()
    # One response of each kind, given a fresh socket file per round (building one per
    # round would double the probe's time).
    bare_resp = _BareResponse(_FakeSocket())  # type: ignore[arg-type]
    resp = kit.response(_FakeSocket())
    kwargs = kit.kwargs
    data = b"x" * ((rounds + warm) * 2)
    bare_file = io.BytesIO(data)
    tee = kit.tee(io.BytesIO(data), sink, 0)
    traced: list[list[int]] = [[] for _ in FIXED_HOOKS]
    bare: list[list[int]] = [[] for _ in FIXED_HOOKS]
    t_urlopen, t_make, t_send, t_class, t_begin, t_close = traced
    b_urlopen, b_make, b_send, b_class, b_begin, b_close = bare
    read: list[int] = []
    read_bare: list[int] = []
    has_urlopen = kit.has_urlopen
    for _ in range(rounds + warm):
        if has_urlopen:
            t0 = clock()
            bare_pool.urlopen("GET", "/probe")
            t1 = clock()
            pool.urlopen("GET", "/probe")
            t2 = clock()
            b_urlopen.append(t1 - t0)
            t_urlopen.append(t2 - t1)
        t0 = clock()
        bare_pool._make_request(bare_conn, "GET", "/probe", **kwargs)
        t1 = clock()
        pool._make_request(conn, "GET", "/probe", **kwargs)
        t2 = clock()
        bare_conn.send(_HEAD)
        t3 = clock()
        conn.send(_HEAD)
        t4 = clock()
        bare_cls = bare_conn.response_class  # what an untraced connection does
        t5 = clock()
        cls = conn.response_class  # hands the exchange to the begin() below, as in a request
        t6 = clock()
        b_make.append(t1 - t0)
        t_make.append(t2 - t1)
        b_send.append(t3 - t2)
        t_send.append(t4 - t3)
        b_class.append(t5 - t4)
        t_class.append(t6 - t5)
        bare_resp.fp = io.BytesIO(b"ok")  # type: ignore[assignment]
        resp.fp = io.BytesIO(b"ok")
        t0 = clock()
        bare_resp.begin()
        t1 = clock()
        resp.begin()
        t2 = clock()
        bare_resp.fp.close()  # type: ignore[union-attr]
        t3 = clock()
        resp.fp.close()
        t4 = clock()
        bare_file.read(1)
        t5 = clock()
        tee.read(1)
        t6 = clock()
        b_begin.append(t1 - t0)
        t_begin.append(t2 - t1)
        b_close.append(t3 - t2)
        t_close.append(t4 - t3)
        read_bare.append(t5 - t4)
        read.append(t6 - t5)
    # Nothing left for their finalizers to close.
    bare_resp.fp = None  # type: ignore[assignment]
    resp.fp = None
    if warm:
        for samples in (*traced, *bare, read, read_bare):
            del samples[:warm]
    if not read or q.empty() or cls is bare_cls:
        raise RuntimeError(f"the hook probe did not reach the hooks ({rounds} rounds)")
    fixed: dict[str, int] = {}
    for name, t, b in zip(FIXED_HOOKS, traced, bare):
        fixed[name] = max(0, _median(t) - _median(b)) if t else 0
    floor = _median(read_bare)
    return HookCosts([t - floor if t > floor else 0 for t in read], fixed, clock() - start)


# -- the monitor -------------------------------------------------------------------------


class PerformanceMonitor:
    """Figures of one tracer: histograms, gauges, rates, targets; runs the alert rules.

    Fed by the worker (``finished``, ``flushed``, ``hold``, ``batch``, ``tick``); read by
    any thread (``figures``, ``meets_target``, ``histograms``). ``clock`` (seconds,
    monotonic) drives windows, ticks and alert durations -- tests pass their own.
    """

    def __init__(
        self,
        config: Config,
        gauges: Callable[[], Gauges] = Gauges,
        *,
        clock: Callable[[], float] = time.monotonic,
        perf_offset_ns: int = 0,
        callbacks: list[Callable[[Any], None]] | None = None,
        slot_s: float = 10.0,
        slots: int = 6,
        probe: Callable[[], HookCosts] | None = probe_hooks,
    ) -> None:
        self.config = config
        self._gauges = gauges
        self._clock = clock
        #: perf_counter_ns minus wall-clock ns, as the assembler's records use them.
        self._offset = perf_offset_ns
        self._probe = probe
        now = clock()
        self.window_s = slot_s * slots
        self.tick_s = 1.0
        #: Whether the worker wakes for ``tick()`` (alerts or endpoints on): without ticks
        #: the counts and histograms still grow, but windows, rates and gauges stand still.
        self.ticking = bool(config.alerts or config.health_port is not None)
        self.added = WindowedHistogram(slots, slot_s, now)
        self.chunk = WindowedHistogram(slots, slot_s, now)
        self.lag = WindowedHistogram(slots, slot_s, now)
        self.hold = WindowedHistogram(slots, slot_s, now)
        # The latest probe's figures (ns): per body read, per send, the fixed hooks of one
        # exchange (their sum and each), and how long the probe took.
        self._hook_ns = 0
        self._send_ns = 0
        self._fixed_ns = 0
        self._fixed: dict[str, int] = dict.fromkeys(FIXED_HOOKS, 0)
        self._probe_ns = 0
        # (per-read median, fixed hook costs) of the last PROBES_KEPT probes.
        self._probed: deque[tuple[int, dict[str, int]]] = deque(maxlen=PROBES_KEPT)
        self._ends: list[int] = []  # end times (wall-scale ns) of records not yet written
        self._holds: list[int] = []  # GIL holds not yet bucketed
        self._buckets: dict[int, int] = {}  # added time -> its bucket (a cache)
        self.exchanges = 0
        self.queue_max = 0  # largest queue seen since the last tick
        self._last = Gauges()
        self._queue_peak = 0  # largest queue seen in the last tick (what alerts look at)
        self._rss: int | None = None
        # (clock, records_written, bytes_written, records_lost) once per tick, over the window
        self._samples: deque[tuple[float, int, int, int]] = deque()
        self._next_tick = now
        self._next_probe = now
        self.alerts = AlertEngine(
            default_rules(config),
            clock=clock,
            report_s=config.report_s if config.alerts else 0,
            callbacks=callbacks,
        )
        if config.alerts:
            self.alerts.configuration(_config_figures(config))

    # -- fed by the worker ---------------------------------------------------------------

    def finished(self, out: Sequence[Finished]) -> None:
        """Exchanges the assembler just ended (before they are handed to the writer)."""
        fixed = self._fixed_ns
        read = self._hook_ns
        send = self._send_ns
        append = self._ends.append
        h = self.added.current
        counts = h.counts
        # An exchange's added time takes a few integer operations; its bucket is cached by
        # value (most exchanges of a client repeat the same few values), so an exchange
        # costs a dict lookup, not a bucketing.
        buckets = self._buckets
        if len(buckets) > 4096:
            buckets.clear()
        total = 0
        most = h.max
        for f in out:
            # The fixed hooks, one per body read that delivered body bytes, and one per
            # request body piece sent after the head.
            reads = f.reads
            body = f.request_body
            v = fixed + (len(reads) >> 1) * read if reads else fixed
            if body:
                v += len(body) * send
            i = buckets.get(v)
            if i is None:
                i = buckets[v] = bucket_of(v)
            counts[i] += 1
            total += v
            if v > most:
                most = v
            append(f.wall_ns + f.timing[3])
        h.n += len(out)
        h.total += total
        h.max = most
        self.exchanges += len(out)
        ends = self._ends
        if len(ends) > 100_000:  # writes failing for long: stop measuring their lag
            del ends[:50_000]

    def flushed(self) -> None:
        """The writer just wrote every record it held."""
        ends = self._ends
        if ends:
            # Ends are on the records' wall-clock scale; ``offset`` brings now onto it.
            self.lag.current.record_since(perf_counter_ns() - self._offset, ends)
            ends.clear()
        if self._holds:
            self._fold_holds()

    def hold_ns(self, ns: int) -> None:
        """The worker held the GIL for ``ns`` in one slice (bucketed later, in a batch)."""
        self._holds.append(ns)

    def _fold_holds(self) -> None:
        holds = self._holds
        self.hold.current.record_many(holds)
        holds.clear()

    def batch(self, depth: int) -> None:
        """The worker drained ``depth`` queued events at once."""
        if depth > self.queue_max:
            self.queue_max = depth

    def due(self) -> float:
        """Seconds until the next tick (0 if due now)."""
        return max(0.0, self._next_tick - self._clock())

    def maybe_tick(self) -> None:
        if self._clock() >= self._next_tick:
            self.tick()

    def tick(self) -> None:
        """Sample gauges, rotate windows, re-probe, evaluate the alert rules."""
        now = self._clock()
        self._next_tick = now + self.tick_s
        g = self._read_gauges()
        self._queue_peak = max(self.queue_max, g.queue_depth)
        self.queue_max = 0
        self._rss = rss_bytes()
        samples = self._samples
        samples.append((now, g.records_written, g.bytes_written, g.records_lost))
        while len(samples) > 2 and samples[0][0] < now - self.window_s:
            samples.popleft()
        if self._holds:
            self._fold_holds()
        for h in (self.added, self.chunk, self.lag, self.hold):
            h.rotate(now)
        if self._probe is not None and now >= self._next_probe:
            self._next_probe = now + self.added.slot_s
            self._reprobe(self._probe)
        if self.config.alerts:
            # The rules need the window's added time and the gauges only (~20 us); the
            # full figures (~70 us of GIL) only for the report, once a report_s.
            self.alerts.evaluate(self.figures(full=False), full=self.figures)

    def _reprobe(self, probe: Callable[[], HookCosts]) -> None:
        # All or nothing: a probe that fails, or returns something unusable, leaves the
        # previous figures in place (and monitoring going).
        try:
            costs = probe()
            fixed = {name: int(costs.fixed.get(name, 0)) for name in FIXED_HOOKS}
            reads = sorted(int(v) for v in costs.read)
            read = reads[len(reads) // 2]
            took = int(costs.took_ns)
            if reads[0] < 0 or took < 0 or min(fixed.values()) < 0:
                raise ValueError(f"negative hook cost in {costs!r}")
        except Exception:
            log.debug("zltrace: hook probe failed; keeping the previous figures", exc_info=True)
            return
        self.chunk.current.record_many(reads)
        probed = self._probed
        probed.append((read, fixed))
        mid = len(probed) // 2
        self._hook_ns = sorted(r for r, _ in probed)[mid]
        self._fixed = {name: sorted(f[name] for _, f in probed)[mid] for name in FIXED_HOOKS}
        self._send_ns = self._fixed["send"]
        self._fixed_ns = sum(self._fixed.values())
        self._probe_ns = took

    # -- read by anyone ------------------------------------------------------------------

    def _read_gauges(self) -> Gauges:
        try:
            self._last = self._gauges()
        except Exception:  # a half-built or torn-down tracer: the last figures will do
            log.debug("zltrace: reading the gauges failed", exc_info=True)
        return self._last

    @property
    def hook_ns(self) -> int:
        """The latest probed cost of one body read's hook (ns)."""
        return self._hook_ns

    @property
    def fixed_hooks_ns(self) -> int:
        """The latest probed cost of the hooks every exchange goes through once (ns)."""
        return self._fixed_ns

    def meets_target(self, figures: dict[str, Any] | None = None) -> bool:
        """Window p95 added time and held memory both under their targets."""
        cfg = self.config
        if figures is None:
            p95 = self.added.window().p95
            memory = self._read_gauges().memory_bytes
        else:
            p95 = figures["added_p95_ns"]
            memory = figures["memory_bytes"]
        return bool(p95 < cfg.target_p95_us * 1000 and memory < cfg.target_memory)

    def figures(self, full: bool = True) -> dict[str, Any]:
        """Every figure as a flat dict of plain numbers (ns, bytes, per second).

        Gauges are read now; rates, the queue peak and RSS are as of the last tick. With
        ``full=False`` only the window's added time is summarised (what the rules need).
        """
        g = self._read_gauges()
        cfg = self.config
        out: dict[str, Any] = {"window_s": self.window_s}
        summaries = [("added", self.added.window())]
        if full:
            summaries += [
                ("added_run", self.added.run()),
                ("chunk", self.chunk.run()),
                ("lag", self.lag.window()),
                ("hold", self.hold.window()),
            ]
        for name, summary in summaries:
            out[f"{name}_count"] = summary.n
            out[f"{name}_mean_ns"] = round(summary.mean, 1)
            out[f"{name}_p50_ns"] = summary.p50
            out[f"{name}_p95_ns"] = summary.p95
            out[f"{name}_p99_ns"] = summary.p99
            out[f"{name}_max_ns"] = summary.max
        out["hook_ns"] = self._hook_ns
        out["send_hook_ns"] = self._send_ns
        out["fixed_hooks_ns"] = self._fixed_ns
        for name, ns in self._fixed.items():
            out[f"fixed_{name}_ns"] = ns
        out["probe_ns"] = self._probe_ns
        records_s = bytes_s = 0.0
        lost_recent = 0
        samples = self._samples
        if len(samples) >= 2:
            (t0, r0, b0, l0), (t1, r1, b1, l1) = samples[0], samples[-1]
            if t1 > t0:
                records_s = (r1 - r0) / (t1 - t0)
                bytes_s = (b1 - b0) / (t1 - t0)
            lost_recent = l1 - l0
        elif samples:
            lost_recent = samples[-1][3]
        budget = cfg.memory_pool_size
        out.update(
            exchanges=self.exchanges,
            events=g.events,
            queue_depth=g.queue_depth,
            queue_depth_peak=self._queue_peak,
            open_exchanges=g.open_exchanges,
            records_written=g.records_written,
            bytes_written=g.bytes_written,
            records_lost=g.records_lost,
            records_lost_recent=lost_recent,
            write_errors=g.write_errors,
            records_per_s=round(records_s, 3),
            bytes_per_s=round(bytes_s, 3),
            memory_bytes=g.memory_bytes,
            memory_budget_bytes=budget,
            budget_utilization=round(g.memory_bytes / budget, 6),
            rss_bytes=self._rss,
            target_p95_ns=cfg.target_p95_us * 1000,
            target_memory_bytes=cfg.target_memory,
        )
        out["meets_target"] = self.meets_target(out)
        return out

    def histograms(self) -> dict[str, Histogram]:
        """Whole-run copies of the histograms, by name."""
        return {
            "added": self.added.run_histogram(),
            "chunk": self.chunk.run_histogram(),
            "lag": self.lag.run_histogram(),
            "hold": self.hold.run_histogram(),
        }


def _config_figures(config: Config) -> dict[str, Any]:
    """The configuration as log fields (nothing secret is in a Config)."""
    import attrs

    out: dict[str, Any] = {}
    for a in attrs.fields(type(config)):
        value = getattr(config, a.name)
        out[f"config_{a.name}"] = list(value) if isinstance(value, tuple) else value
    return out
