"""The background worker of a raw event log: events in, records out, nothing per exchange.

Wake discipline: unlike ``worker.py``'s thread, this one does not block on the queue, so a
caller never wakes it per event (a futex wake and a GIL handoff in the middle of the
caller's request). It sleeps on an event until its next timed wake, a quarter of
``flush_ms`` after its last (``drain.py`` says why events must not wait longer than half of
it before being handled without yields), and the callers wake it early only at a mark
(:mod:`.rawpool`): ``buffer_size`` exchanges started since its last wake, the pool half
full, half of ``memory_pool_size`` passed by reference. ``flush()``, ``stop()`` (and so
close and fork) wake it too, and it wakes on its own for the writer's next retry and the
observer's next tick, and every ``THROTTLE_POLL_S`` while the budget throttles callers (they
wait for it). Each wake drains the queue whole, encodes it in slices of ``SLICE_NS`` of its
own CPU time with a real sleep between them while the backlog is small and young (callers
get the GIL), and writes everything it encoded: so a process killed with SIGKILL loses at
most the events of the last ``flush_ms`` (and what the kernel had not written of the last
``write``).

What it does per event: one record encoded (``rawenc``) and buffered, and the event's pool
slot released once encoded (the record is a copy). What is held: records buffered or kept
by the writer while the disk fails (``pending_bytes``) and the queued events (their count
times the mean bytes per event). There are no bodies in flight to spill: every body byte is
in a record as soon as it is handled.
"""

from __future__ import annotations

import queue
import threading
import time
from time import perf_counter_ns, thread_time_ns
from typing import Any, Callable

from . import events as ev_kinds
from .budget import THROTTLE_POLL_S, Budget
from .drain import FLUSH, STOP, YIELD_S, DrainThread, queued_at
from .observer import NULL_OBSERVER, WorkerObserver
from .rawenc import RawEncoder
from .rawpool import RawInlet
from .rawtally import Ended, RawTally
from .sizes import EVENT_COST
from .writer import TraceWriter

#: CPU time the worker works between two yields. Longer than ``drain.SLICE_NS``: each yield
#: is a sleep and a wait to get the GIL back, and with timed wakes a batch holds up to
#: ``flush_ms`` of events, so short slices make the yields most of the worker's cost; a caller
#: that needs the GIL meanwhile waits at most one slice (bench/README.md has the figures).
SLICE_NS = 500_000


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
        inlet: RawInlet | None = None,
    ) -> None:
        super().__init__(q, writer, flush_ms, name, on_crash, observer)
        #: The callers' side: the pool, and the event that wakes this thread early.
        self.inlet = inlet if inlet is not None else RawInlet(q.put, 0, buffer_size, slot=0)
        self._last_ex = 0  # the highest exchange number seen
        #: Wakes that were asked for (a mark, a flush, a stop) rather than timed.
        self.early_wakeups = 0
        self._enc = encoder
        self._tally = RawTally(encoder.wall0_ns, encoder.perf0_ns)
        self._ended: list[Ended] = []  # exchanges ended, for the monitor
        self.budget = budget if budget is not None else Budget(writer.memory_limit)
        self._on_pressure = on_pressure
        self._data_bytes = 0
        self._buffer_size = buffer_size
        self._started = 0  # exchanges started since the last flush
        #: The timed wake's period: a quarter of ``flush_ms``, so a batch is drained young
        #: enough to be handled with yields and still written within ``flush_ms``.
        self._period_ns = max(1_000_000, self._flush_ns // 4)
        #: Records buffered past this weight are written at once, whatever their count or
        #: age: a stream read at full speed would otherwise hold many MiB of them.
        self._flush_bytes = max(1 << 16, self.budget.limit // 8)
        self._event_cost = EVENT_COST  # mean payload so far + what an event's objects take

    def _handle(self, batch: list[Any]) -> bool:
        """Encode one drained batch in slices; True when told to stop."""
        enc = self._enc
        writer = self._writer
        out: list[bytes] = []
        released: list[int] = []
        inlet = self.inlet
        start = perf_counter_ns()
        start_cpu = thread_time_ns()
        for i, ev in enumerate(batch):
            batch[i] = None  # the record is a copy: the event's payload may go now
            kind = ev[0]
            if kind >= FLUSH:
                self._add(out)
                if kind == STOP:
                    inlet.release(released)
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
                self.inlet.release(released)
                released.clear()
                self._flush(force=True)
                ev[1].set()
                continue
            try:
                enc.encode(ev, out)
                self._tally.event(ev, self._ended)
            except Exception:
                self._error("event")
            self.events += 1
            if kind == ev_kinds.DATA or kind == ev_kinds.SEND:
                if kind == ev_kinds.DATA:
                    self._data_bytes += len(ev[2])
                if len(ev) > 4:  # its pool slot (or the number it reserved)
                    released.append(ev[4])
                else:  # by reference, counted by the inlet
                    inlet.ref_done += len(ev[2]) + EVENT_COST
            elif kind == ev_kinds.START:
                self.exchanges += 1
                self._started += 1
                self._last_ex = max(self._last_ex, ev[1])
            if len(out) >= 64:
                self._add(out)
            now = perf_counter_ns()
            if now - start > SLICE_NS:
                cpu = thread_time_ns()
                if cpu - start_cpu < SLICE_NS:
                    start = now
                    continue
                self._add(out)
                self.inlet.release(released)
                released.clear()
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
        self.inlet.release(released)
        self._observer.hold_ns(perf_counter_ns() - start)
        if self._oldest is not None and (
            self._started >= self._buffer_size or perf_counter_ns() - self._oldest >= self._flush_ns
        ):
            self._flush()
        return False

    # -- the thread: timed wakes ---------------------------------------------------------------

    def flush(self, timeout: float | None) -> bool:
        done = threading.Event()
        self._q.put((FLUSH, done))
        self.inlet.wake.set()
        return done.wait(timeout) and self._writer.pending == 0

    def stop(self, timeout: float | None) -> bool:
        if not self._stop_sent:
            self._q.put((STOP, self.stopped))
            self._stop_sent = True
            self.inlet.wake.set()
        return super().stop(timeout)

    def _loop(self) -> None:
        q = self._q
        get = q.get_nowait
        inlet = self.inlet
        wake = inlet.wake
        observer = self._observer
        last = perf_counter_ns()
        idle = False
        while True:
            now = perf_counter_ns()
            timeout: float | None = None
            if idle:
                # A whole period went by with nothing queued: sleep until a caller's next
                # event (it wakes us once, seeing ``idle``), unless something else is due.
                inlet.idle = True
                if q.qsize():  # queued before the flag was seen: no wake is coming
                    inlet.idle = False
                    idle = False
            if not idle:
                timeout = max(0.0, (last + self._period_ns - now) / 1e9)
            if self._oldest is not None:  # a write failed: its next try
                retry = max(0.0, (self._writer.retry_at - now) / 1e9)
                timeout = retry if timeout is None else min(timeout, retry)
            if self.budget.throttled:  # callers are waiting for this thread
                timeout = THROTTLE_POLL_S if timeout is None else min(timeout, THROTTLE_POLL_S)
            if observer.ticking:
                tick = observer.due()
                timeout = tick if timeout is None else min(timeout, tick)
            if wake.wait(timeout):
                wake.clear()
                self.early_wakeups += 1
            inlet.idle = False
            last = perf_counter_ns()
            batch = [get() for _ in range(q.qsize())]
            idle = not batch
            if batch:
                self._batch_t = queued_at(batch[0], last)
                self.wakeups += 1
                self._account(len(batch))
                observer.batch(len(batch))
                if self._handle(batch):
                    return
                inlet.rearm(self._last_ex)
            if self._oldest is not None:
                self._flush()
            if observer.ticking:
                observer.maybe_tick()

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
        if self._started >= self._buffer_size or writer.pending_bytes >= self._flush_bytes:
            self._flush()

    # -- the memory budget (policy in budget.py; nothing in flight to spill here) -------------

    def _account(self, backlog: int) -> None:
        budget = self.budget
        if self.events:
            self._event_cost = self._data_bytes // self.events + EVENT_COST
        budget.update(self._writer.pending_bytes + (backlog + self._q.qsize()) * self._event_cost)
        self._pressure()

    def _pressure(self, ending: bool = False) -> None:
        cost = self._event_cost
        queued = self._q.qsize() * cost
        held = self._writer.pending_bytes + queued
        self.budget.press(held, queued, cost, self._on_pressure, ending)

    def _flush(self, force: bool = False) -> None:
        if self._writer.flush(force):
            self._oldest = None
            self._started = 0
            self._observer.flushed()
        elif self._oldest is None:
            self._oldest = perf_counter_ns()
