"""The sides of an A/B comparison (bare, traced, caller-only) and the :class:`Run` making them."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from time import perf_counter_ns
from typing import Any

import urllib3

from ... import Config, Tracer
from ..._format import dead_letter_path, side_path
from .output import Output
from .plan import Plan
from .seams import divert_events, worker_clock
from .serverproc import BenchServer
from .verify import verify_trace


class Side:
    """One pool of one side of the A/B, and what went through it."""

    def __init__(self, pool: Any, label: str) -> None:
        self.pool = pool
        self.label = label
        self.requests = 0
        self.body_bytes = 0
        self._lock = threading.Lock()

    def count(self, requests: int, body_bytes: int) -> None:
        """Add what went through the pool (thread-safe: throughput threads share a side)."""
        with self._lock:
            self.requests += requests
            self.body_bytes += body_bytes


def new_pool(server: BenchServer, maxsize: int) -> urllib3.HTTPConnectionPool:
    """A bare keep-alive pool on the bench server (blocking when shared by threads)."""
    return urllib3.HTTPConnectionPool(server.host, server.port, maxsize=maxsize, block=maxsize > 1)


class TracedSide(Side):
    """A tracer of its own (one per scenario, so its counters are the scenario's) and its pool."""

    def __init__(
        self, run: Run, label: str, *, zero_latency: bool = True, maxsize: int = 1
    ) -> None:
        self.tracer = Tracer(
            Config(dir=run.trace_dir, zero_latency=zero_latency, handle_signals=False)
        )
        super().__init__(self.tracer.wrap(new_pool(run.server, maxsize)), label)
        self.run = run
        self.worker_clock = worker_clock(self.tracer)
        self.finished: dict[str, Any] | None = None

    def worker_cpu_ns(self) -> int | None:
        """The worker thread's CPU time so far, or None where it cannot be read."""
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
            "stats_before_close": public_stats(stats),
            "stats_after_close": public_stats(final),
        }
        remove_trace(self.tracer.path)
        self.run.accounting.append(self.finished)
        return self.finished


class CallerOnlySide(Side):
    """Diagnostic only: a traced pool whose events go to a queue that nothing drains.

    What remains of the traced - bare difference is the capture code on the caller thread
    alone (tuples, ``perf_counter_ns``, ``put``), without the worker's wake-ups and GIL holds.
    ``usable`` is False where the events cannot be diverted (see ``seams.divert_events``).

    With ``discard_every_s``, a thread wakes that often and drops what was queued: a worker
    that discards, the physical ceiling of capture as it is (the throughput part's
    "capture only" side). Its trace stays empty; nothing about it is checked for loss.
    """

    def __init__(
        self,
        run: Run,
        *,
        maxsize: int = 1,
        discard_every_s: float | None = None,
        label: str = "caller only",
    ) -> None:
        self.tracer = Tracer(Config(dir=run.trace_dir, handle_signals=False))
        self.sink: queue.SimpleQueue[Any] = queue.SimpleQueue()
        super().__init__(self.tracer.wrap(new_pool(run.server, maxsize)), label)
        self.usable = divert_events(self.tracer, self.sink.put)
        self._stop = threading.Event()
        self._discarder: threading.Thread | None = None
        if self.usable and discard_every_s is not None:
            self._discarder = threading.Thread(
                target=self._discard_loop,
                args=(discard_every_s,),
                name="zltrace-bench-discard",
                daemon=True,
            )
            self._discarder.start()

    def _discard_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.drain()

    def drain(self) -> None:
        """Drop the queued events."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.sink.get_nowait()

    def close(self) -> None:
        """Stop the discarding thread, close the tracer and the pool, delete the trace."""
        self._stop.set()
        if self._discarder is not None:
            self._discarder.join(timeout=10)
        self.drain()
        self.tracer.close(timeout=10)
        self.pool.close()
        remove_trace(self.tracer.path)


def remove_trace(path: str) -> None:
    """Delete a trace file with its side and dead-letter files (those that exist)."""
    for name in (path, side_path(path), dead_letter_path(path)):
        with contextlib.suppress(OSError):
            os.remove(name)


def public_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """``Tracer.stats()`` without the trace path (a temporary file, deleted)."""
    return {k: v for k, v in stats.items() if k != "path"}


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
        """A new bare side on the bench server."""
        return Side(new_pool(self.server, maxsize), label)
