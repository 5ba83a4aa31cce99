"""The background worker: one daemon thread per tracer owns everything slow.

Goal: the caller thread pays for a tuple and a ``SimpleQueue.put`` per event and nothing
else -- in particular it must never wait long for the GIL while this thread holds it.
The GIL is the whole game here: when the caller's ``recv()`` returns it needs the GIL
back, and if this thread is in the middle of pure-Python work it waits until we release
it voluntarily (blocking call, sleep, write) or until the switch interval forces us.
(We never touch ``sys.setswitchinterval``: it belongs to the host.)

How each hold is kept short:

1. Few wake-ups. The thread blocks in ``get()`` while idle (no CPU, no polling). The first
   event wakes it; it then sleeps ``GATHER_S`` so the events of that period arrive while it
   does nothing, and drains them all at once. One wake-up per batch, not per event.
2. Work in slices. Events are handled in slices of at most ``SLICE_NS`` of this thread's
   CPU time; after each slice the thread sleeps ``YIELD_S`` -- a real sleep, long enough
   for a caller that is waiting for the GIL to take it (``sleep(0)`` drops the GIL but
   retakes it before a waiting thread, woken on another core, can run). CPU time, not wall
   time: wall time also counts the time spent waiting for the GIL while a caller ran, and
   slices timed that way end in a yield after almost every event (more sleeps, more
   thread switches, more worker CPU). The yields happen only while the backlog is small
   and young: with more than ``BACKLOG`` events queued, or a batch older than half
   ``flush_ms`` (``drain.py`` says why), the worker runs flat out until it has caught up,
   so memory stays bounded and kill -9 loses at most ``flush_ms`` (counted in
   ``stats()["worker_catchups"]``).
3. Nothing proportional to body size holds the GIL: the assembler keeps references and
   ``memoryview`` slices, never joins; bodies over ``INLINE_MAX`` go to the side file with
   ``os.writev``, which releases the GIL while the kernel copies. The largest hold left is
   encoding one line with an inline body of at most ``INLINE_MAX`` bytes.
4. Memory stays within ``memory_pool_size``: above 90% in-flight bodies spill to the side
   file, above 75% the queue is bounded and callers wait for this thread (policy in
   ``budget.py``).

What this design does not achieve is the tail: a caller that finds the GIL held by this
thread waits on a condition variable and must be woken, so the share of time this thread
holds the GIL becomes the share of requests that pay a wake-up. Shorter slices do not help,
and none at all makes it worse. ``bench/README.md`` has the measurements (``python -m
zltrace bench``).

The worker reports what it does to a ``WorkerObserver`` (``observer.py``: the monitor,
wired by the tracer); by default nobody observes.
"""

from __future__ import annotations

import queue
import time
from time import perf_counter_ns, thread_time_ns
from typing import Any, Callable

from .assembler import Assembler, Finished
from .budget import Budget
from .drain import FLUSH, SLICE_NS, STOP, YIELD_S, DrainThread
from .observer import NULL_OBSERVER, WorkerObserver
from .sizes import EVENT_COST
from .writer import TraceWriter


class Worker(DrainThread):
    """Drains the tracer's queue into the assembler and the writer, on its own thread."""

    def __init__(
        self,
        q: queue.SimpleQueue[Any],
        assembler: Assembler,
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
        self._asm = assembler
        self.budget = budget if budget is not None else Budget(writer.memory_limit)
        self._on_pressure = on_pressure
        self._spill_at = self.budget.high  # in-flight bytes above which _relieve() runs
        #: What a queued event holds, objects included: the mean payload so far + EVENT_COST.
        self._event_cost = EVENT_COST
        self._backlog = 0  # events in the batch drained last
        self._buffer_size = buffer_size

    def _handle(self, batch: list[Any]) -> bool:
        """Process one drained batch in slices; True when told to stop."""
        asm = self._asm
        out: list[Finished] = []
        start = perf_counter_ns()
        start_cpu = thread_time_ns()
        for ev in batch:
            kind = ev[0]
            if kind >= FLUSH:
                self._finish(out)
                if kind == STOP:
                    self._pressure(ending=True)  # no caller may wait for a worker that ends
                    asm.finish_all(perf_counter_ns(), out)
                    self._finish(out)
                    try:
                        self._writer.close()
                    except OSError:
                        self._error("close")
                    ev[1].set()
                    return True
                self._flush(force=True)
                ev[1].set()
                continue
            try:
                asm.handle(ev, out)
            except Exception:
                self._error("event")
            self.events += 1
            if asm.bytes_held > self._spill_at:
                self._relieve()
            now = perf_counter_ns()
            if out:
                self._finish(out)
                now = perf_counter_ns()
            if now - start > SLICE_NS:
                # Wall time includes the time this thread waited for the GIL while a caller
                # ran; only our own CPU time counts against the slice (a caller that wanted
                # the GIL meanwhile has had it). Checked only when the cheap clock says so.
                cpu = thread_time_ns()
                if cpu - start_cpu < SLICE_NS:
                    start = now
                    continue
                self.max_slice_ns = max(self.max_slice_ns, now - start)
                self._observer.hold_ns(now - start)
                queued = self._q.qsize()
                self._pressure()
                if self._may_yield(now, queued, self.budget.throttled):
                    time.sleep(YIELD_S)
                else:
                    # Falling behind: keeping up (bounded memory, nothing lost) comes before
                    # short holds; the interpreter's switch interval still shares the GIL.
                    self.catchups += 1
                start = perf_counter_ns()
                start_cpu = thread_time_ns()
        self._finish(out)
        self._observer.hold_ns(perf_counter_ns() - start)
        if self._oldest is not None and (
            self._writer.pending >= self._buffer_size
            or perf_counter_ns() - self._oldest >= self._flush_ns
        ):
            self._flush()
        return False

    def _finish(self, out: list[Finished]) -> None:
        writer = self._writer
        if out:
            self._observer.finished(out)
        for f in out:
            try:
                writer.add(f)
            except Exception:
                self._error("record")
                writer.records_lost += 1
                continue
            self.exchanges += 1
            if self._oldest is None:
                self._oldest = self._unflushed_since()
            if writer.pending >= self._buffer_size:
                self._flush()
        out.clear()

    # -- the memory budget (policy in budget.py) ----------------------------------------------

    def _account(self, backlog: int) -> None:
        """Total what is held now (``backlog`` events drained or queued, not yet handled)."""
        asm = self._asm
        budget = self.budget
        self._backlog = backlog
        if self.events:
            self._event_cost = asm.data_bytes // self.events + EVENT_COST
        pending = self._writer.pending_bytes
        queued = (backlog + self._q.qsize()) * self._event_cost
        budget.update(asm.bytes_held + pending + queued)
        # Lines kept while the disk is gone and events not handled yet count too, so bodies
        # in flight spill earlier; but spilling every event would not help those: in-flight
        # bodies get at least a quarter of the budget.
        self._spill_at = max(budget.high - pending - queued, budget.limit // 4)
        self._pressure()

    def _relieve(self) -> None:
        """Above 90%: flush, then spill in-flight bodies to the side file (drop if impossible)."""
        budget = self.budget
        budget.update(self._asm.bytes_held + self._writer.pending_bytes)
        # The spill below may block in write() for a long time (writeback throttling with
        # much in flight); callers must not fill the queue meanwhile.
        self._pressure()
        self._flush()
        budget.spill(self._asm, self._writer, max(0, self._spill_at - (budget.high - budget.low)))
        if self._asm.bytes_held > self._spill_at:
            # Nothing could go (the side file fails, or what is left cannot be spilled): wait
            # for the limit itself (then bodies are dropped), or the next batch's accounting.
            self._spill_at = budget.limit

    def _pressure(self, ending: bool = False) -> None:
        """Bound the queue while the budget is under pressure (step 2 of the policy)."""
        budget = self.budget
        cost = self._event_cost
        backlog = max(self._backlog, self._q.qsize())
        queued = backlog * cost
        held = self._asm.bytes_held + self._writer.pending_bytes + queued
        # Lifted only once callers fill the queue slowly: lifted while they still press
        # against the bound, they would flood the queue the moment this thread is not
        # scheduled (a loaded machine), before it could bound it again.
        settled = backlog <= budget.max_queued // 4
        budget.press(held, queued, cost, self._on_pressure, ending, settled)

    def _flush(self, force: bool = False) -> None:
        # On failure the writer keeps the records and schedules its retry (``retry_at``).
        if self._writer.flush(force):
            self._oldest = None
            self._observer.flushed()
        elif self._oldest is None:
            self._oldest = perf_counter_ns()
