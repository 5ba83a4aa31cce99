"""The performance monitor: log-linear histograms, sliding windows, figures of a real tracer."""

from __future__ import annotations

import math
import queue
import time
from pathlib import Path
from typing import Any

import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from support.server import ScriptedServer, response

import zltrace
from zltrace._capture import pool as _pool
from zltrace._capture import tee as _tee
from zltrace._capture.probe import FIXED_HOOKS, HookCosts, probe_hooks
from zltrace._capture.targets import wrap_target
from zltrace._monitor.counters import Counters
from zltrace._monitor.endpoints import State, metrics_text
from zltrace._monitor.histogram import (
    LOWER,
    NBUCKETS,
    UPPER,
    Histogram,
    WindowedHistogram,
    bucket_of,
)
from zltrace._monitor.monitor import Gauges, PerformanceMonitor
from zltrace._pipeline import events as _events
from zltrace._pipeline.assembler import Assembler, Finished
from zltrace._pipeline.redact import Redactor
from zltrace._pipeline.worker import Worker
from zltrace._pipeline.writer import TraceWriter

# Values from 0 ns to ~20 minutes: the range the monitor must resolve.
values = st.integers(min_value=0, max_value=1_200 * 10**9)


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def exact(sorted_values: list[int], q: float) -> int:
    return sorted_values[max(1, math.ceil(q * len(sorted_values))) - 1]


def within_bucket_error(reported: int, true: int) -> bool:
    # Never below the exact value; above it by less than 1/16 of it (the bucket width).
    return true <= reported <= true + true // 16


@given(st.lists(values, min_size=1, max_size=400))
def test_percentiles_match_exact_values_within_bucket_error(data: list[int]) -> None:
    """p50/p95/p99/max equal the sorted-list values up to the bucket's relative error."""
    h = Histogram()
    h.record_many(data)
    s = h.summary()
    ordered = sorted(data)
    assert s.n == len(data)
    assert s.max == ordered[-1]
    assert math.isclose(s.mean, sum(data) / len(data))
    for q, got in ((0.5, s.p50), (0.95, s.p95), (0.99, s.p99)):
        assert within_bucket_error(got, exact(ordered, q)), (q, got, exact(ordered, q))
        assert h.percentile(q) == got


@given(values)
def test_every_value_falls_inside_its_bucket(v: int) -> None:
    """bucket_of(v) names a bucket whose bounds hold v, at most 1/16 of v wide."""
    i = bucket_of(v)
    assert LOWER[i] <= v <= UPPER[i]
    assert UPPER[i] - LOWER[i] <= max(0, LOWER[i] // 16)


def test_buckets_tile_the_range_without_gaps() -> None:
    """Consecutive buckets meet exactly; values too large land in the last one."""
    assert LOWER[0] == 0
    for i in range(NBUCKETS - 1):
        assert UPPER[i] + 1 == LOWER[i + 1]
    assert bucket_of(10**30) == NBUCKETS - 1
    assert bucket_of(-5) == 0


@given(st.lists(values, max_size=200))
def test_record_and_record_many_agree(data: list[int]) -> None:
    """One value at a time or in a batch: the same counts, sum and max."""
    a, b = Histogram(), Histogram()
    for v in data:
        a.record(v)
    b.record_many(data)
    assert (a.counts, a.n, a.total, a.max) == (b.counts, b.n, b.total, b.max)


def test_memory_is_fixed_whatever_is_recorded() -> None:
    """A histogram is NBUCKETS counters after a million values as before the first."""
    h = Histogram()
    h.record_many(range(0, 10**12, 10**6))
    assert len(h.counts) == NBUCKETS
    assert h.n == 10**6


@given(st.lists(values, min_size=1, max_size=200))
def test_cumulative_counts_are_monotone_and_end_at_the_total(data: list[int]) -> None:
    """Prometheus-style cumulative counts never decrease and never exceed the count."""
    h = Histogram()
    h.record_many(data)
    bounds = [100, 1_000, 10_000, 10**6, 10**9, 10**12, 10**15]
    cum = h.cumulative(bounds)
    assert cum == sorted(cum)
    assert cum[-1] == len(data)
    for b, c in zip(bounds, cum):
        # Whatever is counted at a bound is really at most that bound.
        assert c <= sum(1 for v in data if v <= b)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 200), values), max_size=60))
def test_window_holds_only_recent_slots_and_run_holds_everything(
    steps: list[tuple[int, int]],
) -> None:
    """After rotations, the window sums the last slots only; the run sums every value."""
    now = 0.0
    w = WindowedHistogram(slots=6, slot_s=10.0, now=now)
    seen: list[tuple[float, int]] = []
    for dt, v in steps:
        now += dt
        w.rotate(now)
        w.record(v)
        seen.append((now, v))
    run = w.run()
    assert run.n == len(steps)
    assert run.max == max((v for _, v in seen), default=0)
    # The current slot started at slot_end - 10 s; the window is it and the 5 before it.
    start = w.slot_end - 60.0
    recent = [v for t, v in seen if t >= start]
    win = w.window()
    assert win.n == len(recent)
    assert win.max == max(recent, default=0)


def test_window_empties_after_a_long_silence_but_the_run_does_not() -> None:
    """A gap longer than the window (ticks missed) leaves the window empty."""
    w = WindowedHistogram(slots=6, slot_s=10.0, now=0.0)
    w.record_many([1_000, 2_000, 3_000])
    w.rotate(5_000.0)
    assert w.window().n == 0
    assert w.run().n == 3
    assert w.run().p99 >= 3_000
    assert w.slot_end > 5_000.0


def _monitor(
    clock: Clock, gauges: Gauges | None = None, **config: object
) -> tuple[PerformanceMonitor, list[Gauges]]:
    box = [gauges or Gauges()]
    cfg = zltrace.Config(**config)  # type: ignore[arg-type]
    m = PerformanceMonitor(cfg, lambda: box[0], clock=clock, probe=lambda: costs(300, 200))
    return m, box


def costs(read: int, each_fixed: int, send: int | None = None) -> HookCosts:
    """What an injected probe returns: every fixed hook at ``each_fixed`` ns."""
    fixed = dict.fromkeys(FIXED_HOOKS, each_fixed)
    if send is not None:
        fixed["send"] = send
    return HookCosts([read] * 8, fixed, 100_000)


def test_rates_come_from_the_writer_counters_over_the_window() -> None:
    """records/s and bytes/s: counter deltas over the ticks inside the window."""
    clock = Clock()
    m, box = _monitor(clock)
    m.tick()
    for i in range(1, 11):
        clock.now += 1
        box[0] = Gauges(records_written=100 * i, bytes_written=10_000 * i)
        m.tick()
    f = m.figures()
    assert f["records_per_s"] == 100.0
    assert f["bytes_per_s"] == 10_000.0


def test_meets_target_follows_p95_added_time_and_memory() -> None:
    """The target is met below both limits, and missed above either."""
    clock = Clock()
    m, box = _monitor(clock, target_p95_us=5, target_memory=1_000_000)
    m.tick()
    assert m.hook_ns == 300
    assert m.meets_target()
    box[0] = Gauges(memory_bytes=2_000_000)
    assert not m.meets_target()
    box[0] = Gauges()
    m.added.record_many([10_000] * 100)  # 10 us per exchange > 5 us
    assert not m.meets_target()
    assert m.figures()["meets_target"] is False


def _finished(reads: int, body_pieces: int, wall_ns: int, end: int) -> Finished:
    return Finished(
        "r.1",
        "r.1",
        wall_ns,
        "{",
        [b"b"] * body_pieces if body_pieces else None,
        "{",
        [b"x"],
        [0, 0] * reads,
        "complete",
        None,
        (1, 2, 3, end),
    )


def test_added_time_is_fixed_hooks_plus_reads_and_sends_and_lag_runs_to_the_flush() -> None:
    """finished(): fixed + reads x read hook + body pieces x send hook; flushed(): lag."""
    clock = Clock()
    probed = [costs(300, 500, send=400)]
    m = PerformanceMonitor(zltrace.Config(), clock=clock, probe=lambda: probed[0])
    m.tick()
    fixed = 5 * 500 + 400  # the head's send is one of the fixed hooks
    assert m.fixed_hooks_ns == fixed
    now = time.perf_counter_ns()
    # wall_ns + end, on the tracer's scale (offset 0 here), 1 ms before now.
    m.finished([_finished(1, 0, now - 2_000_000, 1_000_000), _finished(10, 2, 0, now - 1)])
    clock.now += 10
    probed[0] = costs(1_000, 500, send=400)
    m.tick()  # re-probed: a new per-read cost for what follows
    m.finished([_finished(1, 0, 0, now)])
    m.flushed()
    added = m.added.run()
    assert added.n == 3
    assert added.mean * 3 == (fixed + 300) + (fixed + 10 * 300 + 2 * 400) + (fixed + 1_000)
    assert added.max == fixed + 10 * 300 + 2 * 400
    lag = m.lag.run()
    assert lag.n == 3
    assert lag.max >= 1_000_000
    m.hold_ns(70_000)
    m.flushed()
    assert m.hold.run().max == 70_000


@settings(max_examples=60)
@given(
    st.integers(0, 2_000),
    st.integers(0, 50),
    st.integers(1, 5_000),
    st.integers(0, 3_000),
    st.integers(0, 3_000),
)
def test_added_time_of_an_exchange_is_fixed_plus_reads_times_read_cost(
    reads: int, pieces: int, read_ns: int, each_fixed: int, send_ns: int
) -> None:
    """An exchange with N reads and P body pieces adds fixed + N x read + P x send."""
    m = PerformanceMonitor(
        zltrace.Config(), clock=Clock(), probe=lambda: costs(read_ns, each_fixed, send_ns)
    )
    m.tick()
    m.finished([_finished(reads, pieces, 0, 1)])
    true = each_fixed * (len(FIXED_HOOKS) - 1) + send_ns + reads * read_ns + pieces * send_ns
    s = m.added.run()
    assert (s.n, s.max, s.mean) == (1, true, true)
    assert within_bucket_error(s.p50, true)
    assert within_bucket_error(m.figures()["added_p99_ns"], true)


def test_figures_expose_the_probe() -> None:
    """figures(): per-read, per-send and fixed hook costs, each fixed hook, the probe's time."""
    m = PerformanceMonitor(zltrace.Config(), clock=Clock(), probe=lambda: costs(300, 200, 700))
    m.tick()
    f = m.figures()
    assert f["hook_ns"] == 300
    assert f["send_hook_ns"] == 700
    assert f["fixed_hooks_ns"] == 200 * (len(FIXED_HOOKS) - 1) + 700
    assert f["fixed_send_ns"] == 700
    assert f["fixed_make_request_ns"] == f["fixed_begin_ns"] == 200
    assert f["probe_ns"] == 100_000
    assert f["chunk_count"] == 8


def test_metrics_expose_the_probed_hook_costs() -> None:
    """/metrics text: gauges for the per-read and the fixed per-exchange hook costs."""
    m = PerformanceMonitor(zltrace.Config(), clock=Clock(), probe=lambda: costs(300, 200, 700))
    m.tick()
    counters = Counters(mode="zero-latency", worker_alive=True)
    lines = metrics_text(State(counters, m)).splitlines()
    fixed = (200 * (len(FIXED_HOOKS) - 1) + 700) / 1e9
    assert f"zltrace_fixed_hooks_cost_seconds {fixed!r}" in lines
    assert "# TYPE zltrace_fixed_hooks_cost_seconds gauge" in lines
    assert f"zltrace_hook_cost_seconds {300 / 1e9!r}" in lines


def test_a_broken_probe_keeps_the_previous_figures() -> None:
    """A probe that raises or returns nonsense changes nothing; monitoring goes on."""
    clock = Clock()
    results: list[object] = [costs(300, 200, 700)]

    def probe() -> HookCosts:
        r = results[0]
        if isinstance(r, Exception):
            raise r
        return r  # type: ignore[return-value]

    m = PerformanceMonitor(zltrace.Config(), clock=clock, probe=probe)
    m.tick()
    before = {k: v for k, v in m.figures().items() if "hook" in k or k.startswith("probe")}
    assert before["fixed_hooks_ns"] > 0
    for broken in (
        RuntimeError("probe failed"),
        HookCosts([], {}, 1),  # no reads
        HookCosts([300], {"make_request": -5}, 1),  # negative
        "not a probe result",
        HookCosts([300], {"send": "many"}, 1),  # type: ignore[dict-item]
    ):
        results[0] = broken
        clock.now += 10
        m.tick()
        now = {k: v for k, v in m.figures().items() if k in before}
        assert now == before, broken
    m.finished([_finished(2, 0, 0, 1)])
    assert m.added.run().max == before["fixed_hooks_ns"] + 2 * 300


def test_one_slow_probe_does_not_set_the_figures_alone() -> None:
    """Figures are medians of the last three probes: an outlier counts only once repeated."""
    clock = Clock()
    probed = [costs(300, 200)]
    m = PerformanceMonitor(zltrace.Config(), clock=clock, probe=lambda: probed[0])
    seen = []
    for c in (costs(300, 200), costs(310, 210), costs(9_000, 6_000), costs(9_000, 6_000)):
        probed[0] = c
        m.tick()
        clock.now += 10
        seen.append((m.hook_ns, m.fixed_hooks_ns))
    n = len(FIXED_HOOKS)
    assert seen == [(300, 200 * n), (310, 210 * n), (310, 210 * n), (9_000, 6_000 * n)]


def test_probe_times_every_hook_of_the_real_code() -> None:
    """Each fixed hook urllib3 has, and the read hook, probe to a positive cost."""
    probed = probe_hooks(64)
    assert len(probed.read) == 64
    assert all(c >= 0 for c in probed.read)
    assert sorted(probed.read)[32] > 0
    assert set(probed.fixed) == set(FIXED_HOOKS)
    has_urlopen = "urlopen" in vars(_pool.TracedPoolMixin)  # urllib3 1.26 only
    for name, ns in probed.fixed.items():
        if name == "urlopen" and not has_urlopen:
            assert ns == 0
        else:
            assert ns > 0, name
    assert probed.took_ns > 0


def test_probe_leaves_exchange_numbers_and_thread_state_alone() -> None:
    """The probe's events go to its own queue: no exchange id taken, no thread-local touched."""
    before = next(_events.exchange_ids)
    _pool.logical.id = 41
    _tee.pending.ex = 42
    try:
        probe_hooks(4)
        assert next(_events.exchange_ids) == before + 1
        assert _pool.logical.id == 41
        assert _tee.pending.ex == 42
        assert _tee.pending.sink is None
    finally:
        del _pool.logical.id
        del _tee.pending.ex


def test_real_tracer_reports_added_time_lag_and_holds(trace_dir: Path) -> None:
    """After real exchanges: counts match, added time = fixed + reads x read cost, lag."""
    tracer = zltrace.Tracer(zltrace.Config(dir=str(trace_dir), flush_ms=10))
    try:
        with ScriptedServer([response(200, b"x" * 500)] * 20) as srv:
            pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
            for _ in range(20):
                assert pool.urlopen("GET", "/a").data == b"x" * 500
            pool.close()
        assert tracer.flush(timeout=10)
        stats = tracer.stats()
    finally:
        tracer.close(timeout=10)
    perf = stats["performance"]
    assert perf["exchanges"] == 20
    assert perf["added_run_count"] == 20
    assert perf["lag_count"] == 20
    assert perf["hold_count"] >= 1
    assert perf["hook_ns"] > 0
    assert perf["fixed_hooks_ns"] > 0
    # Each GET went through the fixed hooks and at least one body read.
    assert perf["added_run_p50_ns"] >= perf["fixed_hooks_ns"] + perf["hook_ns"]
    assert perf["lag_max_ns"] > 0
    # stats() carries the monitor's verdict, and the verdict follows the targets.
    assert (
        stats["meets_target"]
        is perf["meets_target"]
        is (
            perf["added_p95_ns"] < perf["target_p95_ns"]
            and perf["memory_bytes"] < perf["target_memory_bytes"]
        )
    )
    assert isinstance(stats["alerts_active"], list)
    assert perf["rss_bytes"] is None or perf["rss_bytes"] > 0


def test_standard_mode_feeds_the_monitor_too(std_tracer: zltrace.Tracer) -> None:
    """Synchronous mode counts exchanges and their lag on the writing thread."""
    with ScriptedServer([response(200, b"ok")] * 3) as srv:
        pool = std_tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        for _ in range(3):
            pool.urlopen("GET", "/")
        pool.close()
    perf = std_tracer.stats()["performance"]
    assert perf["exchanges"] == 3
    assert perf["lag_count"] == 3


def test_the_worker_runs_with_nobody_observing(trace_dir: Path) -> None:
    """Capture -> queue -> worker with the default NullObserver -> trace file: no monitor needed."""
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()

    class Sink:
        _put = q.put

    writer = TraceWriter(str(trace_dir), "unobserved")
    assembler = Assembler("run", time.time_ns(), time.perf_counter_ns(), Redactor(()))
    worker = Worker(q, assembler, writer, buffer_size=10, flush_ms=10, name="zltrace-unobserved")
    worker.start()
    with ScriptedServer([response(200, b"seen")] * 2) as srv:
        pool = wrap_target(urllib3.HTTPConnectionPool("127.0.0.1", srv.port), Sink())
        assert [pool.urlopen("GET", f"/{i}").data for i in range(2)] == [b"seen"] * 2
        pool.close()
    assert worker.stop(timeout=10)
    assert worker.exchanges == 2
    assert [ex.response.body for ex in zltrace.read(writer.path)] == [b"seen"] * 2
