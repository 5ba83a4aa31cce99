"""The background worker of a raw event log: events in, records out, nothing per exchange.

The same thread as ``worker.py`` (``drain.py``; ``worker.py``'s design comment says why): it
blocks while idle, gathers ``GATHER_S`` after the first event, drains the queue, works in slices of
``SLICE_NS`` of its own CPU time with a real sleep between them while the backlog is small,
and bounds the queue while the memory budget is under pressure. What it does per event is
less: one record encoded (``rawenc``) and buffered; the writer flushes once ``buffer_size``
exchanges have started since the last flush (an exchange makes a few records: counting
records would write several times as often for the same traffic) or when the oldest
buffered record is ``flush_ms`` old, so a process killed with
SIGKILL loses at most the events of the last ``flush_ms`` (and what the kernel had not
written of the last ``write``).

What is held: records buffered or kept by the writer while the disk fails
(``pending_bytes``) and the queued events (their count times the mean bytes per event).
There are no bodies in flight to spill: every body byte is in a record as soon as it is
handled.
"""

from __future__ import annotations

import queue
import time
from time import perf_counter_ns, thread_time_ns
from typing import Any, Callable

from . import events as ev_kinds
from .budget import Budget
from .drain import FLUSH, SLICE_NS, STOP, YIELD_S, DrainThread
from .observer import NULL_OBSERVER, WorkerObserver
from .rawenc import RawEncoder
from .rawtally import Ended, RawTally
from .writer import TraceWriter


class RawWorker(DrainThread):
    """Drains the tracer's queue into raw records and the writer, on its own thread."""

    def __init__(
        self,
        q: queue.SimpleQueue[Any],
        encoder: RawEncoder,
        writer: TraceWriter,
        buffer_size: int,
        flush_ms: int,
        name: str,
        on_crash: Callable[[], None] | None = None,
        budget: Budget | None = None,
        on_pressure: Callable[[bool], None] | None = None,
        observer: WorkerObserver = NULL_OBSERVER,
    ) -> None:
        super().__init__(q, writer, flush_ms, name, on_crash, observer)
        self._enc = encoder
        self._tally = RawTally(encoder.wall0_ns, encoder.perf0_ns)
        self._ended: list[Ended] = []  # exchanges ended, for the monitor
        self.budget = budget if budget is not None else Budget(writer.memory_limit)
        self._on_pressure = on_pressure
        self._mean = 0
        self._data_bytes = 0
        self._buffer_size = buffer_size
        self._started = 0  # exchanges started since the last flush

    def _handle(self, batch: list[Any]) -> bool:
        """Encode one drained batch in slices; True when told to stop."""
        enc = self._enc
        writer = self._writer
        out: list[bytes] = []
        start = perf_counter_ns()
        start_cpu = thread_time_ns()
        for ev in batch:
            kind = ev[0]
            if kind >= FLUSH:
                self._add(out)
                if kind == STOP:
                    self._pressure(ending=True)
                    if enc.seq:  # no file for a tracer that saw nothing
                        out.append(enc.stop(perf_counter_ns()))
                    self._add(out)
                    try:
                        writer.close()
                    except OSError:
                        self._error("close")
                    ev[1].set()
                    return True
                self._flush(force=True)
                ev[1].set()
                continue
            try:
                enc.encode(ev, out)
                self._tally.event(ev, self._ended)
            except Exception:
                self._error("event")
            self.events += 1
            if kind == ev_kinds.DATA:
                self._data_bytes += len(ev[2])
            elif kind == ev_kinds.START:
                self.exchanges += 1
                self._started += 1
            if len(out) >= 64:
                self._add(out)
            now = perf_counter_ns()
            if now - start > SLICE_NS:
                cpu = thread_time_ns()
                if cpu - start_cpu < SLICE_NS:
                    start = now
                    continue
                self._add(out)
                self.max_slice_ns = max(self.max_slice_ns, now - start)
                self._observer.hold_ns(now - start)
                self._pressure()
                if self._may_yield(now, self._q.qsize(), self.budget.throttled):
                    time.sleep(YIELD_S)
                else:
                    self.catchups += 1
                start = perf_counter_ns()
                start_cpu = thread_time_ns()
        self._add(out)
        self._observer.hold_ns(perf_counter_ns() - start)
        if self._oldest is not None and (
            self._started >= self._buffer_size or perf_counter_ns() - self._oldest >= self._flush_ns
        ):
            self._flush()
        return False

    def _add(self, out: list[bytes]) -> None:
        if self._ended:
            self._observer.finished(self._ended)  # type: ignore[arg-type]  # what it reads
            self._ended.clear()
        if not out:
            return
        writer = self._writer
        for rec in out:
            writer.add_record(rec)
        out.clear()
        if self._oldest is None:
            self._oldest = self._unflushed_since()
        if self._started >= self._buffer_size:
            self._flush()

    # -- the memory budget (policy in budget.py; nothing in flight to spill here) -------------

    def _account(self, backlog: int) -> None:
        budget = self.budget
        if self.events:
            self._mean = self._data_bytes // self.events
        budget.update(self._writer.pending_bytes + (backlog + self._q.qsize()) * self._mean)
        self._pressure()

    def _pressure(self, ending: bool = False) -> None:
        budget = self.budget
        mean = self._mean or 1
        held = self._writer.pending_bytes + self._q.qsize() * mean
        if not budget.throttled:
            if held > budget.resume and not ending and self._on_pressure is not None:
                budget.throttled = True
                budget.throttles += 1
                budget.max_queued = max(16, budget.limit // 4 // mean)
                self._on_pressure(True)
        elif held < budget.low or ending:
            budget.throttled = False
            if self._on_pressure is not None:
                self._on_pressure(False)

    def _flush(self, force: bool = False) -> None:
        if self._writer.flush(force):
            self._oldest = None
            self._started = 0
            self._observer.flushed()
        elif self._oldest is None:
            self._oldest = perf_counter_ns()
