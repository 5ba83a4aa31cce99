"""``python -m zltrace bench``: what tracing costs, measured against a loopback server.

Method (the same in every part):

- A fast asyncio HTTP/1.1 server runs in a child process (:class:`BenchServer`), so it never
  competes with this process for the GIL; the client is this process, one keep-alive pool
  per side.
- Traced and bare requests are interleaved A B A B ... (the order flips on every pair) against
  the same server, so drift of the machine hits both sides alike. A request is timed with
  ``perf_counter_ns`` around the whole ``urlopen`` plus the full body read (``stream(64 KiB)``);
  the first chunk gives the time to first byte. *Added latency* = traced - bare of one pair;
  its p50 is the median of the pairs. The caller thread's CPU time (``thread_time_ns``) is
  taken around the same requests: traced - bare is what capture costs on the caller thread.
- Every traced request is accounted for: after each scenario the tracer is closed and its
  trace file is read back (one line per exchange, outcome ``complete``, body sizes equal to
  what the client read, side-file bodies inside the side file). Missing ones are data loss.
- Trace files go to a temporary directory that is deleted afterwards. The tracer runs with
  its default settings (not from the environment), signal handlers off.

Nothing here changes process-wide settings (switch interval, GC thresholds). ``tracemalloc``
is started only for the memory part's own sub-runs and stopped after them.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
from collections.abc import Sequence
from time import perf_counter_ns, thread_time_ns
from typing import Any, Callable, TextIO

import urllib3

from .. import Config, Tracer
from .._version import __version__
from .benchserver import BenchServer

__all__ = ["main"]

PARTS = ("latency", "throughput", "memory", "modes")

JSON_1K = "/json?size=1024"
BYTES_256K = "/bytes?size=262144"
BYTES_1M = "/bytes?size=1048576"
SSE = "/sse?events=20&size=64&gap_ms=1"
CHUNKED_MANY = "/chunked?size=65536&chunk=64"  # 1024 chunks
CHUNKED_ONE = "/chunked?size=65536&chunk=65536"  # 1 chunk, same payload
CHUNKS_MANY = 1024
STREAM_AMT = 64 * 1024
MB = 1_000_000  # rates are in MB/s = 10**6 bytes/s
MIB = 1024 * 1024

# Targets. "spec": the product spec; "issue 3": the stricter goals for a 2-core machine.
SPEC_P95_MS = 0.1
SPEC_RPS = 1000.0
SPEC_MEMORY_MB = 50.0
P50_1K_US = 10.0
P99_1K_US = 25.0
SSE_TTFB_P50_US = 10.0
PACED_P99_US = 50.0
PACED_RATE_MBPS = 50.0
CAPACITY_P50_US = 25.0
CAPACITY_GOAL_MBPS = 200.0
RATIO_MIN = 0.97
RSS_OVER_MB = 25.0
SLOPE_MAX_MB_PER_MIN = 0.5  # "no upward slope": under 5 MB per 10 minutes
CALLER_PER_CHUNK_US = 0.5
CALLER_PER_REQUEST_US = 5.0
CAPACITY_STEPS_MBPS: tuple[float | None, ...] = (50, 100, 200, 300, None)  # None: no pacing


# --------------------------------------------------------------------------- plan


class Plan:
    """How much of everything to do; ``--quick`` and the flags scale it."""

    def __init__(self, args: argparse.Namespace, parts: Sequence[str]) -> None:
        quick: bool = args.quick
        self.quick = quick
        n = args.requests or (200 if quick else 2000)
        self.pairs_1k = n
        self.pairs_noise = max(50, n // 2)
        self.pairs_256k = max(30, n // 2)
        self.pairs_sse = max(8, n // 30)
        self.pairs_chunked = max(20, n // 20)
        self.paced_s = 0.3 if quick else 2.5
        self.paced_1m_s = 0.4 if quick else 3.0
        self.capacity_step_s = 0.12 if quick else 0.8
        self.tp_run_s = 0.12 if quick else 0.35
        self.tp_rounds = 1 if quick else 2  # of (bare, traced, traced, bare)
        self.tp_max_requests: int | None = args.requests
        self.concurrency: list[int] = args.concurrent or [1, 16, 100]
        if args.duration is not None:
            self.duration = float(args.duration)
        elif quick:
            self.duration = 0.5
        else:
            self.duration = 3.0 if len(parts) > 1 else 30.0
        self.tm_duration = min(self.duration, 0.3 if quick else 1.0)
        self.memory_warm_s = min(1.0, max(0.3, 0.25 * self.duration))
        self.modes_1k = max(50, n // 2)
        self.modes_256k = max(30, n // 5)
        self.modes_sse = max(6, n // 60)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


# --------------------------------------------------------------------------- statistics


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


def _q(values: Sequence[float], q: float) -> float:
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


# --------------------------------------------------------------------------- output


_INFO = "\u2139\ufe0f"  # information source emoji


class Output:
    """Check lines to stdout (one per check), progress to stderr, every figure to JSON."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out = out
        self.err = err
        self.t0 = time.monotonic()
        self.checks: list[dict[str, Any]] = []
        encoding = getattr(out, "encoding", None) or "ascii"
        try:
            f"✅❌{_INFO}≤≥µ".encode(encoding)
            self.fancy = True
        except (UnicodeEncodeError, LookupError):
            self.fancy = False

    def _text(self, s: str) -> str:
        if self.fancy:
            return s
        for a, b in (("≤", "<="), ("≥", ">="), ("µs", "us"), ("µ", "u")):
            s = s.replace(a, b)
        return s.encode("ascii", "replace").decode("ascii")

    def progress(self, msg: str) -> None:
        self.err.write(self._text(f"[bench {time.monotonic() - self.t0:5.1f}s] {msg}\n"))
        self.err.flush()

    def check(
        self, name: str, passed: bool, target: str, actual: str, source: str, value: float | None
    ) -> None:
        self.checks.append(
            {
                "name": name,
                "passed": passed,
                "target": target,
                "actual": actual,
                "source": source,
                "value": value,
            }
        )
        mark = "PASS" if passed else "FAIL"
        if self.fancy:
            mark = ("✅ " if passed else "❌ ") + mark
        self.line(f"{mark} {name}: {target} target, {actual} actual")

    def info(self, text: str) -> None:
        self.line((f"{_INFO}  INFO " if self.fancy else "INFO ") + text)

    def line(self, text: str) -> None:
        self.out.write(self._text(text) + "\n")
        self.out.flush()


def _us(v: float) -> str:
    return f"{v:.1f}µs" if abs(v) < 1000 else f"{v / 1000:.2f}ms"


# --------------------------------------------------------------------------- sides


class Side:
    """One pool of one side of the A/B, and what went through it."""

    def __init__(self, pool: Any, label: str) -> None:
        self.pool = pool
        self.label = label
        self.requests = 0
        self.body_bytes = 0
        self._lock = threading.Lock()

    def count(self, requests: int, body_bytes: int) -> None:
        with self._lock:
            self.requests += requests
            self.body_bytes += body_bytes


def _new_pool(server: BenchServer, maxsize: int) -> urllib3.HTTPConnectionPool:
    return urllib3.HTTPConnectionPool(server.host, server.port, maxsize=maxsize, block=maxsize > 1)


class TracedSide(Side):
    """A tracer of its own (one per scenario, so its counters are the scenario's) and its pool."""

    def __init__(
        self, run: Run, label: str, *, zero_latency: bool = True, maxsize: int = 1
    ) -> None:
        self.tracer = Tracer(
            Config(dir=run.trace_dir, zero_latency=zero_latency, handle_signals=False)
        )
        super().__init__(self.tracer.wrap(_new_pool(run.server, maxsize)), label)
        self.run = run
        self.worker_clock = _worker_clock(self.tracer)
        self.finished: dict[str, Any] | None = None

    def worker_cpu_ns(self) -> int | None:
        return self.worker_clock() if self.worker_clock is not None else None

    def finish(self) -> dict[str, Any]:
        """Close the tracer, check the trace against what was requested, delete the files."""
        if self.finished is not None:
            return self.finished
        stats = self.tracer.stats()
        t0 = perf_counter_ns()
        close_ok = self.tracer.close(timeout=120)
        close_ms = (perf_counter_ns() - t0) / 1e6
        final = self.tracer.stats()
        self.pool.close()
        verdict = verify_trace(self.tracer.path)
        lost = max(0, self.requests - verdict["complete"])
        ok = (
            close_ok
            and lost == 0
            and verdict["records"] == self.requests
            and verdict["body_bytes"] == self.body_bytes
            and verdict["side_ok"]
        )
        self.finished = {
            "label": self.label,
            "mode": stats["mode"],
            "requests": self.requests,
            "body_bytes_read": self.body_bytes,
            "close_ok": close_ok,
            "close_ms": round(close_ms, 2),
            **verdict,
            "lost": lost,
            "ok": ok,
            "stats_before_close": _public_stats(stats),
            "stats_after_close": _public_stats(final),
        }
        for path in (self.tracer.path, self.tracer.path[: -len(".jsonl")] + ".bodies"):
            with contextlib.suppress(OSError):
                os.remove(path)
        self.run.accounting.append(self.finished)
        return self.finished


class CallerOnlySide(Side):
    """Diagnostic only: a traced pool whose events go to a queue that nothing drains.

    What remains of the traced - bare difference is the capture code on the caller thread
    alone (tuples, ``perf_counter_ns``, ``put``), without the worker's wake-ups and GIL holds.
    Uses the tracer's private ``_put``; None when that is not there.
    """

    def __init__(self, run: Run) -> None:
        self.tracer = Tracer(Config(dir=run.trace_dir, handle_signals=False))
        self.sink: queue.SimpleQueue[Any] = queue.SimpleQueue()
        super().__init__(self.tracer.wrap(_new_pool(run.server, 1)), "caller only")
        self.usable = hasattr(self.tracer, "_put")
        if self.usable:
            self.tracer._put = self.sink.put

    def drain(self) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                self.sink.get_nowait()

    def close(self) -> None:
        self.drain()
        self.tracer.close(timeout=10)
        self.pool.close()
        for path in (self.tracer.path, self.tracer.path[: -len(".jsonl")] + ".bodies"):
            with contextlib.suppress(OSError):
                os.remove(path)


def _public_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k != "path"}


def _worker_clock(tracer: Tracer) -> Callable[[], int] | None:
    """A CPU-time clock of the tracer's worker thread (Linux/BSD), found by its name."""
    getclock = getattr(time, "pthread_getcpuclockid", None)
    if getclock is None:
        return None
    stem = os.path.basename(tracer.path)[: -len(".jsonl")]
    for t in threading.enumerate():
        if t.name == f"zltrace-worker-{stem}" and t.ident is not None:
            try:
                clk = getclock(t.ident)
                time.clock_gettime_ns(clk)
            except (OSError, AttributeError):
                return None
            return lambda: time.clock_gettime_ns(clk)
    return None


def verify_trace(path: str) -> dict[str, Any]:
    """Count the exchanges in a trace file and check their bodies are all there."""
    records = complete = body_bytes = 0
    outcomes: dict[str, int] = {}
    side_ok = True
    side_sizes: dict[str, int] = {}
    directory = os.path.dirname(path)
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return {"records": 0, "complete": 0, "body_bytes": 0, "outcomes": {}, "side_ok": True}
    with f:
        for line in f:
            records += 1
            try:
                rec = json.loads(line)
            except ValueError:
                outcomes["unreadable"] = outcomes.get("unreadable", 0) + 1
                continue
            outcome = str(rec.get("outcome"))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            response = rec.get("response") or {}
            body = response.get("body") or {}
            size = int(body.get("size", 0))
            if outcome == "complete":
                complete += 1
                body_bytes += size
            if "file" in body:
                name = str(body["file"])
                if name not in side_sizes:
                    try:
                        side_sizes[name] = os.path.getsize(os.path.join(directory, name))
                    except OSError:
                        side_sizes[name] = -1
                if int(body["offset"]) + size > side_sizes[name]:
                    side_ok = False
    return {
        "records": records,
        "complete": complete,
        "body_bytes": body_bytes,
        "outcomes": outcomes,
        "side_ok": side_ok,
    }


# --------------------------------------------------------------------------- requests


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
        return len(self.ttlb[0])

    def added(self, which: str, side: int) -> list[int]:
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
    for _ in range(n):
        for side in sides:
            _, _, _, nbytes = fetch(side.pool, path)
            side.count(1, nbytes)


# --------------------------------------------------------------------------- run


class Run:
    """The server, the trace directory and everything measured so far."""

    def __init__(self, server: BenchServer, trace_dir: str, plan: Plan, out: Output) -> None:
        self.server = server
        self.trace_dir = trace_dir
        self.plan = plan
        self.out = out
        self.accounting: list[dict[str, Any]] = []
        self.results: dict[str, Any] = {}

    def bare(self, maxsize: int = 1, label: str = "bare") -> Side:
        return Side(_new_pool(self.server, maxsize), label)


def _scenario(
    run: Run, label: str, path: str, pairs: int, warmup: int, *, body_size: int = 0
) -> dict[str, Any]:
    """One A/B latency scenario at full speed with a fresh tracer."""
    run.out.progress(f"latency: {label} ({path}), {pairs} pairs")
    bare = run.bare()
    traced = TracedSide(run, label)
    warm([bare, traced], path, warmup)
    traced.tracer.flush(timeout=60)
    gc.collect()
    w0 = traced.worker_cpu_ns()
    e0 = traced.tracer.stats()["exchanges_finished"]
    s = interleave([bare, traced], path, pairs=pairs)
    traced.tracer.flush(timeout=60)
    w1 = traced.worker_cpu_ns()
    e1 = traced.tracer.stats()["exchanges_finished"]
    result = _summarise(s, 1)
    result["path"] = path
    if w0 is not None and w1 is not None and e1 > e0:
        result["worker_cpu_per_exchange_us"] = round((w1 - w0) / (e1 - e0) / 1000, 3)
        if body_size:
            mbytes = (e1 - e0) * body_size / MB
            result["worker_cpu_per_mb_us"] = round((w1 - w0) / mbytes / 1e3, 1)
    result["trace"] = traced.finish()
    bare.pool.close()
    return result


def _summarise(s: Samples, side: int) -> dict[str, Any]:
    ttlb_t, ttlb_b = s.ttlb[side], s.ttlb[0]
    return {
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
        "diff_of_p95_ttlb_us": round((_q(ttlb_t, 0.95) - _q(ttlb_b, 0.95)) / 1000, 3),
        "diff_of_p99_ttlb_us": round((_q(ttlb_t, 0.99) - _q(ttlb_b, 0.99)) / 1000, 3),
        "caller_cpu_added_us": dist_us(s.added("cpu", side)),
        "achieved_body_mbps": round(s.body_bytes[side] / s.elapsed_s / MB, 1)
        if s.elapsed_s
        else 0.0,
    }


# --------------------------------------------------------------------------- latency


def part_latency(run: Run) -> None:
    p = run.plan
    out = run.out
    res: dict[str, Any] = {}
    run.results["latency"] = res

    # A/A: bare against bare, the noise floor of the method on this machine.
    res["noise_floor"] = nf = {
        "json_1k": _noise(run, JSON_1K, p.pairs_noise, 100),
        "bytes_256k": _noise(run, BYTES_256K, max(30, p.pairs_noise // 3), 30),
        "sse": _noise(run, SSE, max(6, p.pairs_sse // 3), 2),
    }

    j = res["json_1k"] = _scenario(run, "1 KB JSON", JSON_1K, p.pairs_1k, 300)
    k = res["bytes_256k"] = _scenario(run, "256 KB", BYTES_256K, p.pairs_256k, 50, body_size=262144)
    e = res["sse"] = _scenario(run, "SSE 20 events", SSE, p.pairs_sse, 3)
    many = res["chunked_1024"] = _scenario(
        run, "chunked 1024 x 64 B", CHUNKED_MANY, p.pairs_chunked, 20
    )
    one = res["chunked_1"] = _scenario(run, "chunked 1 x 64 KiB", CHUNKED_ONE, p.pairs_chunked, 20)
    per_chunk_cpu = (many["caller_cpu_added_us"]["p50"] - one["caller_cpu_added_us"]["p50"]) / (
        CHUNKS_MANY - 1
    )
    per_chunk_wall = (many["added_ttlb_us"]["p50"] - one["added_ttlb_us"]["p50"]) / (
        CHUNKS_MANY - 1
    )
    res["caller_per_chunk_us"] = round(per_chunk_cpu, 4)
    res["added_wall_per_chunk_us"] = round(per_chunk_wall, 4)
    res["caller_per_request_us"] = j["caller_cpu_added_us"]["p50"]

    res["caller_only"] = _caller_only(run)
    nf["paced_256k"] = _noise_paced(run, "256 KB", BYTES_256K, 262144, p.paced_s)
    res["paced_256k"] = _paced(run, "256 KB", BYTES_256K, 262144, p.paced_s)
    nf["paced_1m"] = _noise_paced(run, "1 MB", BYTES_1M, 1048576, p.paced_1m_s)
    res["paced_1m"] = _paced(run, "1 MB", BYTES_1M, 1048576, p.paced_1m_s)
    res["writer_capacity"] = _capacity(run)

    noise = nf["json_1k"]["added_ttlb_us"]
    out.info(
        "noise floor (bare vs bare) p50/p95/p99: "
        + ", ".join(
            f"{name} {_us(d['p50'])}/{_us(d['p95'])}/{_us(d['p99'])}"
            for name, d in (
                ("1 KB", noise),
                ("256 KB", nf["bytes_256k"]["added_ttlb_us"]),
                ("SSE last byte", nf["sse"]["added_ttlb_us"]),
            )
        )
    )
    for name, r, key in (
        ("1 KB JSON", j, "json_1k"),
        ("256 KB", k, "bytes_256k"),
        ("SSE last byte", e, "sse"),
    ):
        v = r["added_ttlb_us"]["p95"] / 1000
        out.check(
            f"Response Latency ({name}, p95 added)",
            v < SPEC_P95_MS,
            f"< {SPEC_P95_MS}ms",
            f"{v:.3f}ms (bare-vs-bare p95 {nf[key]['added_ttlb_us']['p95'] / 1000:.3f}ms)",
            "spec",
            v,
        )
    a1 = j["added_ttlb_us"]
    out.check(
        "1 KB added latency p50",
        a1["p50"] <= P50_1K_US,
        f"≤ {P50_1K_US:g}µs",
        _us(a1["p50"]),
        "issue 3",
        a1["p50"],
    )
    out.check(
        "1 KB added latency p99",
        a1["p99"] <= P99_1K_US,
        f"≤ {P99_1K_US:g}µs",
        f"{_us(a1['p99'])} (bare-vs-bare noise floor p99 {_us(noise['p99'])}; "
        f"p99 traced - p99 bare {_us(j['diff_of_p99_ttlb_us'])})",
        "issue 3",
        a1["p99"],
    )
    f = e["added_ttfb_us"]
    out.check(
        "SSE time-to-first-byte delta p50",
        f["p50"] <= SSE_TTFB_P50_US,
        f"≤ {SSE_TTFB_P50_US:g}µs",
        f"{_us(f['p50'])} (p99 {_us(f['p99'])}; bare-vs-bare p50 "
        f"{_us(nf['sse']['added_ttfb_us']['p50'])})",
        "issue 3",
        f["p50"],
    )
    for key, name in (("paced_256k", "256 KB"), ("paced_1m", "1 MB")):
        r = res[key]
        v = r["added_ttlb_us"]["p99"]
        out.check(
            f"{name} at {PACED_RATE_MBPS:g} MB/s added p99",
            v <= PACED_P99_US,
            f"≤ {PACED_P99_US:g}µs",
            f"{_us(v)} (p50 {_us(r['added_ttlb_us']['p50'])}, {r['achieved_body_mbps']:.0f} MB/s; "
            f"bare-vs-bare paced p99 {_us(nf[key]['added_ttlb_us']['p99'])})",
            "issue 3",
            v,
        )
    cap = res["writer_capacity"]["capacity_mbps"]
    best = max(res["writer_capacity"]["steps"], key=lambda st: st["persisted_mbps"])
    out.check(
        f"Writer capacity (caller p50 added ≤ {CAPACITY_P50_US:g}µs)",
        cap >= CAPACITY_GOAL_MBPS,
        f"≥ {CAPACITY_GOAL_MBPS:g} MB/s",
        f"{cap:.0f} MB/s (most persisted: {best['persisted_mbps']:.0f} MB/s at p50 added "
        f"{_us(best['added_ttlb_us']['p50'])})",
        "issue 3",
        cap,
    )
    v = res["caller_per_chunk_us"]
    out.check(
        "Caller-thread cost per chunk",
        v <= CALLER_PER_CHUNK_US,
        f"≤ {CALLER_PER_CHUNK_US:g}µs",
        f"{v:.2f}µs",
        "issue 3",
        v,
    )
    v = res["caller_per_request_us"]
    out.check(
        "Caller-thread cost per request (1 KB)",
        v <= CALLER_PER_REQUEST_US,
        f"≤ {CALLER_PER_REQUEST_US:g}µs",
        f"{v:.1f}µs",
        "issue 3",
        v,
    )
    co = res["caller_only"]
    if co is not None:
        out.info(
            f"caller-thread cost with the worker kept out (events queued, never drained; "
            f"diagnostic): {co['per_request_us']:.1f}µs per 1 KB request, "
            f"{co['per_chunk_us']:.2f}µs per chunk"
        )
    st = j["trace"]["stats_before_close"]
    out.info(
        f"tracer self-time: worker CPU {j.get('worker_cpu_per_exchange_us', 'n/a')}µs per "
        f"1 KB exchange, {k.get('worker_cpu_per_mb_us', 'n/a')}µs per MB of 256 KB bodies; "
        f"max worker slice {st['worker_max_slice_ns'] / 1000:.0f}µs (1 KB), "
        f"{k['trace']['stats_before_close']['worker_max_slice_ns'] / 1000:.0f}µs (256 KB)"
    )


def _noise(run: Run, path: str, pairs: int, warmup: int) -> dict[str, Any]:
    run.out.progress(f"latency: noise floor, bare vs bare, {path}, {pairs} pairs")
    a, b = run.bare(label="bare-a"), run.bare(label="bare-b")
    warm([a, b], path, warmup)
    gc.collect()
    s = interleave([a, b], path, pairs=pairs)
    a.pool.close()
    b.pool.close()
    return {
        "pairs": s.n,
        "added_ttlb_us": dist_us(s.added("ttlb", 1)),
        "added_ttfb_us": dist_us(s.added("ttfb", 1)),
        "added_cpu_us": dist_us(s.added("cpu", 1)),
    }


def _noise_paced(run: Run, label: str, path: str, size: int, duration_s: float) -> dict[str, Any]:
    """The paced scenario with two bare pools: what pacing alone does to the pairs' tails
    (presumably a request after an idle gap meets a cold thread, cache and CPU, on either side)."""
    run.out.progress(f"latency: noise floor, bare vs bare, {label} paced for {duration_s:g}s")
    a, b = run.bare(label="bare-a"), run.bare(label="bare-b")
    warm([a, b], path, 10)
    gc.collect()
    s = interleave([a, b], path, duration_s=duration_s, rate_mbps=PACED_RATE_MBPS, body_size=size)
    a.pool.close()
    b.pool.close()
    return {"pairs": s.n, "added_ttlb_us": dist_us(s.added("ttlb", 1))}


def _caller_only(run: Run) -> dict[str, Any] | None:
    p = run.plan
    run.out.progress("latency: caller-thread cost with no worker draining (diagnostic)")
    bare = run.bare()
    co = CallerOnlySide(run)
    if not co.usable:
        co.close()
        return None
    res: dict[str, Any] = {}
    try:
        for key, path, pairs in (
            ("json_1k", JSON_1K, p.pairs_1k // 2),
            ("chunked_1024", CHUNKED_MANY, p.pairs_chunked),
            ("chunked_1", CHUNKED_ONE, p.pairs_chunked),
        ):
            warm([bare, co], path, 20)
            co.drain()
            gc.collect()
            s = interleave([bare, co], path, pairs=pairs)
            co.drain()
            res[key] = {
                "pairs": s.n,
                "added_cpu_us": dist_us(s.added("cpu", 1)),
                "added_ttlb_us": dist_us(s.added("ttlb", 1)),
            }
    finally:
        co.close()
        bare.pool.close()
    res["per_request_us"] = res["json_1k"]["added_cpu_us"]["p50"]
    res["per_chunk_us"] = round(
        (res["chunked_1024"]["added_cpu_us"]["p50"] - res["chunked_1"]["added_cpu_us"]["p50"])
        / (CHUNKS_MANY - 1),
        4,
    )
    return res


def _paced(run: Run, label: str, path: str, size: int, duration_s: float) -> dict[str, Any]:
    run.out.progress(f"latency: {label} paced at {PACED_RATE_MBPS:g} MB/s for {duration_s:g}s")
    bare = run.bare()
    traced = TracedSide(run, f"{label} paced")
    warm([bare, traced], path, 10)
    traced.tracer.flush(timeout=60)
    gc.collect()
    s = interleave(
        [bare, traced], path, duration_s=duration_s, rate_mbps=PACED_RATE_MBPS, body_size=size
    )
    result = _summarise(s, 1)
    result["path"] = path
    result["target_mbps"] = PACED_RATE_MBPS
    result["trace"] = traced.finish()
    bare.pool.close()
    return result


def _capacity(run: Run) -> dict[str, Any]:
    """Ramp the traced body rate (256 KB bodies); the writer's capacity is the largest rate it
    persists (bytes on disk / time until flushed) while the caller's p50 added stays low."""
    step_s = run.plan.capacity_step_s
    run.out.progress(f"latency: writer capacity ramp, 256 KB bodies, {step_s:g}s per step")
    bare = run.bare()
    traced = TracedSide(run, "capacity ramp")
    warm([bare, traced], BYTES_256K, 20)
    traced.tracer.flush(timeout=60)
    steps: list[dict[str, Any]] = []
    for rate in CAPACITY_STEPS_MBPS:
        gc.collect()
        b0 = traced.body_bytes
        t0 = perf_counter_ns()
        s = interleave(
            [bare, traced], BYTES_256K, duration_s=step_s, rate_mbps=rate, body_size=262144
        )
        traced.tracer.flush(timeout=120)
        persisted_s = (perf_counter_ns() - t0) / 1e9
        added = dist_us(s.added("ttlb", 1))
        persisted = (traced.body_bytes - b0) / persisted_s / MB
        steps.append(
            {
                "offered_mbps": rate,
                "achieved_mbps": round(s.body_bytes[1] / s.elapsed_s / MB, 1),
                "persisted_mbps": round(persisted, 1),
                "flush_wait_ms": round((persisted_s - s.elapsed_s) * 1000, 1),
                "added_ttlb_us": added,
            }
        )
        run.out.progress(
            f"  offered {rate or 'max'} MB/s: persisted {persisted:.0f} MB/s, "
            f"p50 added {added['p50']:.1f}µs"
        )
    trace = traced.finish()
    bare.pool.close()
    ok = [st["persisted_mbps"] for st in steps if st["added_ttlb_us"]["p50"] <= CAPACITY_P50_US]
    return {
        "steps": steps,
        "capacity_mbps": max(ok) if ok else 0.0,
        "p50_limit_us": CAPACITY_P50_US,
        "body": BYTES_256K,
        "trace": trace,
    }


# --------------------------------------------------------------------------- throughput


def _tp_run(
    side: Side, threads: int, duration_s: float, max_requests: int | None, path: str
) -> dict[str, Any]:
    stop = threading.Event()
    counts = [0] * threads
    nbytes = [0] * threads
    errors = [0] * threads
    lasts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    per_thread = -(-max_requests // threads) if max_requests else 0
    pool = side.pool

    def work(i: int) -> None:
        c = b = err = 0
        barrier.wait()
        while not stop.is_set():
            try:
                r = pool.urlopen("GET", path, retries=False)
                b += len(r.data)
                c += 1
            except Exception:
                err += 1
            if per_thread and c >= per_thread:
                break
        lasts[i] = perf_counter_ns()
        counts[i], nbytes[i], errors[i] = c, b, err

    ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = perf_counter_ns()
    stop.wait(duration_s)
    stop.set()
    for t in ts:
        t.join()
    elapsed = (max(lasts) - t0) / 1e9
    side.count(sum(counts), sum(nbytes))
    return {"requests": sum(counts), "errors": sum(errors), "elapsed_s": elapsed}


def part_throughput(run: Run) -> None:
    p = run.plan
    res: dict[str, Any] = {"path": JSON_1K, "levels": {}}
    run.results["throughput"] = res
    for n in p.concurrency:
        run.out.progress(
            f"throughput: {n} thread(s), {p.tp_rounds} rounds of bare/traced/"
            f"traced/bare, {p.tp_run_s:g}s each"
        )
        bare = run.bare(maxsize=n)
        traced = TracedSide(run, f"throughput {n} threads", maxsize=n)
        for side in (bare, traced):  # open n connections each
            _tp_run(side, n, min(0.2, p.tp_run_s / 2), None, JSON_1K)
        traced.tracer.flush(timeout=60)
        totals = {"bare": [0, 0.0, 0], "traced": [0, 0.0, 0]}
        drain_s = 0.0
        backlog: list[int] = []
        runs = []
        for _ in range(p.tp_rounds):
            for name, side in (
                ("bare", bare),
                ("traced", traced),
                ("traced", traced),
                ("bare", bare),
            ):
                gc.collect()
                r = _tp_run(side, n, p.tp_run_s, p.tp_max_requests, JSON_1K)
                if side is traced:
                    # What the worker still has to do when the app is done: the app-side rate
                    # is only sustainable if the worker keeps up.
                    r["backlog_events"] = traced.tracer.stats()["queue_depth"]
                    t0 = perf_counter_ns()
                    traced.tracer.flush(timeout=120)
                    r["drain_s"] = (perf_counter_ns() - t0) / 1e9
                    drain_s += r["drain_s"]
                    backlog.append(r["backlog_events"])
                totals[name][0] += r["requests"]
                totals[name][1] += r["elapsed_s"]
                totals[name][2] += r["errors"]
                runs.append({"side": name, **r, "rps": round(r["requests"] / r["elapsed_s"], 1)})
        bare_rps = totals["bare"][0] / totals["bare"][1]
        traced_rps = totals["traced"][0] / totals["traced"][1]
        sustained_rps = totals["traced"][0] / (totals["traced"][1] + drain_s)
        res["levels"][str(n)] = {
            "threads": n,
            "bare_rps": round(bare_rps, 1),
            "traced_rps": round(traced_rps, 1),
            "ratio": round(traced_rps / bare_rps, 4),
            "traced_rps_with_drain": round(sustained_rps, 1),
            "ratio_with_drain": round(sustained_rps / bare_rps, 4),
            "worker_backlog_events_at_run_end": backlog,
            "drain_s": round(drain_s, 3),
            "errors": {"bare": totals["bare"][2], "traced": totals["traced"][2]},
            "runs": runs,
            "trace": traced.finish(),
        }
        bare.pool.close()
        run.out.progress(
            f"  bare {bare_rps:.0f} req/s, traced {traced_rps:.0f} req/s "
            f"({sustained_rps:.0f} with the worker's backlog drained)"
        )
    levels = res["levels"].values()
    worst = min(levels, key=lambda lv: lv["traced_rps"])
    run.out.check(
        "Throughput (traced, slowest of " + "/".join(str(n) for n in p.concurrency) + " threads)",
        worst["traced_rps"] > SPEC_RPS,
        f"> {SPEC_RPS:.0f} req/s",
        f"{worst['traced_rps']:.0f} req/s at {worst['threads']} thread(s)",
        "spec",
        worst["traced_rps"],
    )
    for lv in levels:
        run.out.check(
            f"Throughput ratio traced/bare, {lv['threads']} thread(s)",
            lv["ratio"] >= RATIO_MIN,
            f"≥ {RATIO_MIN}",
            f"{lv['ratio']:.3f} ({lv['traced_rps']:.0f} vs {lv['bare_rps']:.0f} req/s; "
            f"{lv['ratio_with_drain']:.3f} counting the worker's "
            f"{lv['drain_s'] * 1000:.0f}ms of catching up)",
            "issue 3",
            lv["ratio"],
        )


# --------------------------------------------------------------------------- memory

MEMORY_MIX = (JSON_1K,) * 9 + (BYTES_256K,)


def _sustain(
    side: Side, duration_s: float, sample_s: float = 0.05, tm: bool = False
) -> dict[str, Any]:
    """Full speed, one thread, the memory mix, for ``duration_s``; samples RSS (and tracemalloc)."""
    samples: list[tuple[float, int]] = []
    tm_samples: list[tuple[float, int]] = []
    start = perf_counter_ns()
    end = start + int(duration_s * 1e9)
    next_sample = start
    n = 0
    mix = MEMORY_MIX
    while True:
        now = perf_counter_ns()
        if now >= next_sample:
            t = (now - start) / 1e9
            rss = rss_bytes()
            if rss is not None:
                samples.append((t, rss))
            if tm:
                tm_samples.append((t, tracemalloc.get_traced_memory()[0]))
            next_sample = now + int(sample_s * 1e9)
        if now >= end:
            break
        _, _, _, nbytes = fetch(side.pool, mix[n % len(mix)])
        side.count(1, nbytes)
        n += 1
    return {
        "requests": n,
        "elapsed_s": (perf_counter_ns() - start) / 1e9,
        "rss": samples,
        "tm": tm_samples,
    }


def _slope_mb_per_min(points: Sequence[tuple[float, int]]) -> float:
    """Slope of the samples after the first 20% of the run (warm-up), MB per minute."""
    if not points:
        return 0.0
    t_end = points[-1][0]
    tail = [(t, v / MIB) for t, v in points if t >= 0.2 * t_end]
    return slope_per_s(tail) * 60


def part_memory(run: Run) -> None:
    p = run.plan
    d = p.duration
    res: dict[str, Any] = {
        "duration_s": d,
        "warm_up_s": p.memory_warm_s,
        "mix": "9 x 1 KB JSON + 1 x 256 KB, one thread",
    }
    run.results["memory"] = res
    if rss_bytes() is None:
        run.out.info("memory: /proc/self/statm is not available here; RSS figures skipped")

    run.out.progress(f"memory: baseline (bare) {d:g}s at full speed")
    bare = run.bare()
    _sustain(bare, p.memory_warm_s)
    gc.collect()
    rb = _sustain(bare, d)
    run.out.progress(f"memory: traced {d:g}s at full speed (after {p.memory_warm_s:g}s warm-up)")
    traced = TracedSide(run, "memory traced")
    _sustain(traced, p.memory_warm_s)
    rt = _sustain(traced, d)
    pre_close = traced.tracer.stats()
    trace = traced.finish()
    after = rss_bytes()

    def mb(v: float) -> float:
        return round(v / MIB, 2)

    base_max = max((v for _, v in rb["rss"]), default=0)
    traced_max = max((v for _, v in rt["rss"]), default=0)
    res["baseline"] = {
        "requests": rb["requests"],
        "elapsed_s": round(rb["elapsed_s"], 3),
        "rss_max_mb": mb(base_max),
        "rss_median_mb": mb(median([v for _, v in rb["rss"]])) if rb["rss"] else 0,
        "slope_mb_per_min": round(_slope_mb_per_min(rb["rss"]), 3),
    }
    res["traced"] = {
        "requests": rt["requests"],
        "elapsed_s": round(rt["elapsed_s"], 3),
        "rss_first_mb": mb(rt["rss"][0][1]) if rt["rss"] else 0,
        "rss_last_mb": mb(rt["rss"][-1][1]) if rt["rss"] else 0,
        "rss_max_mb": mb(traced_max),
        "slope_mb_per_min": round(_slope_mb_per_min(rt["rss"]), 3),
        "bytes_held_at_end": pre_close["bytes_held"],
        "queue_depth_at_end": pre_close["queue_depth"],
        "rss_after_close_mb": mb(after) if after is not None else None,
        "samples": [(round(t, 3), mb(v)) for t, v in rt["rss"]],
    }
    res["rss_over_baseline_mb"] = mb(traced_max - base_max)
    res["trace"] = trace

    # tracemalloc sub-runs: Python-level allocation peaks, bare then traced.
    dt = p.tm_duration
    run.out.progress(f"memory: tracemalloc peaks, {dt:g}s bare + {dt:g}s traced")
    was_tracing = tracemalloc.is_tracing()
    peaks = {}
    for name in ("bare", "traced"):
        gc.collect()
        if not was_tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base_current = tracemalloc.get_traced_memory()[0]
        side: Side = bare if name == "bare" else TracedSide(run, "memory tracemalloc")
        r = _sustain(side, dt, tm=True)
        current, peak = tracemalloc.get_traced_memory()
        if isinstance(side, TracedSide):
            side.finish()
        if not was_tracing:
            tracemalloc.stop()
        peaks[name] = {
            "peak_mb": mb(peak - base_current),
            "end_mb": mb(current - base_current),
            "requests": r["requests"],
            "slope_mb_per_min": round(_slope_mb_per_min(r["tm"]), 3),
        }
    bare.pool.close()
    res["tracemalloc"] = peaks
    res["tracemalloc_peak_over_baseline_mb"] = round(
        peaks["traced"]["peak_mb"] - peaks["bare"]["peak_mb"], 2
    )

    over = res["rss_over_baseline_mb"]
    slope = res["traced"]["slope_mb_per_min"]
    run.out.check(
        "Memory (RSS over baseline)",
        over < SPEC_MEMORY_MB,
        f"< {SPEC_MEMORY_MB:g} MB",
        f"{over:.1f} MB",
        "spec",
        over,
    )
    run.out.check(
        f"RSS over baseline ({d:g}s full-speed run; goal is for 10 min)",
        over <= RSS_OVER_MB,
        f"≤ {RSS_OVER_MB:g} MB",
        f"{over:.1f} MB",
        "issue 3",
        over,
    )
    run.out.check(
        "RSS slope while traced (no upward slope)",
        slope <= SLOPE_MAX_MB_PER_MIN,
        f"≤ {SLOPE_MAX_MB_PER_MIN:g} MB/min",
        f"{slope:+.2f} MB/min over {d:g}s",
        "issue 3",
        slope,
    )
    run.out.info(
        f"tracemalloc peak: traced {peaks['traced']['peak_mb']:.2f} MB, bare "
        f"{peaks['bare']['peak_mb']:.2f} MB ({dt:g}s each); RSS max traced "
        f"{mb(traced_max):.1f} MB, bare {mb(base_max):.1f} MB"
    )


# --------------------------------------------------------------------------- modes


def part_modes(run: Run) -> None:
    """Zero-latency vs standard mode: one A/B run against bare for each, one tracer at a time
    (a worker's GIL holds land on whatever request runs next, so two tracers in one
    interleave would be charged for each other)."""
    p = run.plan
    res: dict[str, Any] = {}
    run.results["modes"] = res
    for key, label, path, pairs, warmup in (
        ("json_1k", "1 KB JSON", JSON_1K, p.modes_1k, 200),
        ("bytes_256k", "256 KB", BYTES_256K, p.modes_256k, 30),
        ("sse", "SSE", SSE, p.modes_sse, 2),
    ):
        res[key] = {"path": path}
        for mode, zero_latency in (("zero_latency", True), ("standard", False)):
            run.out.progress(f"modes: {label}, bare vs {mode.replace('_', '-')}, {pairs} pairs")
            bare = run.bare()
            traced = TracedSide(run, f"modes {label} {mode}", zero_latency=zero_latency)
            warm([bare, traced], path, warmup)
            traced.tracer.flush(timeout=60)
            gc.collect()
            s = interleave([bare, traced], path, pairs=pairs)
            res[key][mode] = _summarise(s, 1)
            res[key][mode]["trace"] = traced.finish()
            bare.pool.close()
        z, st = res[key]["zero_latency"], res[key]["standard"]
        which = "added_ttfb_us" if key == "sse" else "added_ttlb_us"
        what = "time-to-first-byte delta" if key == "sse" else "added latency"
        run.out.info(
            f"modes, {label} {what} p50/p99: zero-latency "
            f"{_us(z[which]['p50'])}/{_us(z[which]['p99'])}, standard "
            f"{_us(st[which]['p50'])}/{_us(st[which]['p99'])}"
        )


# --------------------------------------------------------------------------- main


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "urllib3": str(getattr(urllib3, "__version__", "unknown")),
        "zltrace": __version__,
        "platform": platform.platform(),
    }


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m zltrace bench",
        description="Measure what zltrace costs: traced vs bare requests, interleaved A/B, "
        "against a loopback server in a child process.",
    )
    ap.add_argument(
        "part",
        nargs="?",
        default="all",
        choices=(*PARTS, "all"),
        help="what to measure (default: all, under a minute on 2 cores)",
    )
    ap.add_argument("--json", metavar="FILE", help="write every figure to FILE as JSON")
    ap.add_argument("--quick", action="store_true", help="a few seconds: smaller samples")
    ap.add_argument(
        "--concurrent",
        metavar="N",
        type=int,
        nargs="+",
        action="extend",
        help="throughput thread counts (default: 1 16 100)",
    )
    ap.add_argument(
        "--duration",
        metavar="S",
        type=float,
        help="memory: seconds of each sustained run "
        "(default 3 in 'all', 30 alone, 0.5 with --quick)",
    )
    ap.add_argument(
        "--requests",
        metavar="N",
        type=int,
        help="A/B pairs of the 1 KB latency scenario (others scaled from it), and "
        "a bound on requests per throughput run",
    )
    ap.add_argument(
        "--dir",
        metavar="DIR",
        help="where the temporary trace directory is made (default: system temp)",
    )
    return ap


def main(
    argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run the benchmark; 0 when every target is met, 1 when one is not, 2 on bad usage."""
    out_stream = stdout or sys.stdout
    err_stream = stderr or sys.stderr
    ap = _parser()
    try:
        args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    except SystemExit as exc:  # --help, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    if args.concurrent and any(n < 1 for n in args.concurrent):
        err_stream.write("zltrace bench: --concurrent takes positive thread counts\n")
        return 2
    if (args.requests is not None and args.requests < 1) or (
        args.duration is not None and args.duration <= 0
    ):
        err_stream.write("zltrace bench: --requests and --duration must be positive\n")
        return 2
    parts = list(PARTS) if args.part == "all" else [args.part]
    plan = Plan(args, parts)
    out = Output(out_stream, err_stream)
    machine = _machine()
    out.line(
        f"zltrace {__version__} bench ({', '.join(parts)}{', quick' if args.quick else ''})"
        f": {machine['nproc']} CPUs, {machine['implementation']} {machine['python']}, "
        f"urllib3 {machine['urllib3']}"
    )
    started = time.monotonic()
    report: dict[str, Any] = {
        "command": ["bench", *(argv if argv is not None else sys.argv[1:])],
        "machine": machine,
        "plan": plan.as_dict(),
        "results": {},
        "checks": out.checks,
    }
    crashed: list[str] = []
    trace_root = tempfile.mkdtemp(prefix="zltrace-bench-", dir=args.dir)
    server = BenchServer()
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(trace_root, ignore_errors=True)
        err_stream.write(f"zltrace bench: {exc}\n")
        return 1
    try:
        with server:
            run = Run(server, os.path.join(trace_root, "traces"), plan, out)
            report["results"] = run.results
            for part in parts:
                try:
                    {
                        "latency": part_latency,
                        "throughput": part_throughput,
                        "memory": part_memory,
                        "modes": part_modes,
                    }[part](run)
                except Exception as exc:
                    traceback.print_exc(file=err_stream)
                    crashed.append(part)
                    out.check(
                        f"bench part '{part}' ran to the end",
                        False,
                        "no error",
                        f"{type(exc).__name__}: {exc}",
                        "bench",
                        None,
                    )
            _loss_check(run)
            report["accounting"] = run.accounting
    finally:
        shutil.rmtree(trace_root, ignore_errors=True)
    elapsed = time.monotonic() - started
    report["elapsed_s"] = round(elapsed, 1)
    failed = [c for c in out.checks if not c["passed"]]
    report["passed"] = not failed
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
    out.line(
        f"{len(out.checks) - len(failed)}/{len(out.checks)} checks passed in "
        f"{elapsed:.1f}s" + (f"; figures in {args.json}" if args.json else "")
    )
    return 1 if failed else 0


def _loss_check(run: Run) -> None:
    acc = run.accounting
    if not acc:
        return
    requests = sum(a["requests"] for a in acc)
    complete = sum(min(a["complete"], a["requests"]) for a in acc)
    lost = sum(a["lost"] for a in acc)
    bad = [a["label"] for a in acc if not a["ok"]]
    pct = 100.0 * lost / requests if requests else 0.0
    detail = f"{pct:.3f}% ({complete}/{requests} exchanges complete on disk"
    detail += f"; mismatch in: {', '.join(bad)})" if bad else ", bodies all there)"
    run.out.check("Data loss", not bad and lost == 0, "0%", detail, "spec", pct)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
