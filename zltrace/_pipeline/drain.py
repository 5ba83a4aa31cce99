"""The thread both workers run: block while idle, gather, drain, hand each batch on.

The discipline (``worker.py``'s design comment says why): the thread blocks in ``get()``
while idle; the first event wakes it, it sleeps ``GATHER_S`` so the events of that period
arrive meanwhile, drains them all and hands the batch to its ``_handle`` (which works in
slices of ``SLICE_NS`` of the thread's own CPU time, sleeping ``YIELD_S`` between them while
fewer than ``BACKLOG`` events are queued and the batch is younger than half ``flush_ms``). It
wakes on its own for the next flush, the writer's next retry or the observer's next tick.
``FLUSH`` and ``STOP`` are the two control events; a crash of our own code stops tracing,
never the app.

Durability bounds the yields: kill -9 may lose at most the last ``flush_ms`` of events, so
an unflushed record's age counts from when its event was queued, not from when this thread
got to it. On a loaded machine a 50 µs sleep can last milliseconds; a worker that kept
yielding would fall seconds behind the app with a backlog still under ``BACKLOG``, and
those events would die with the process. Once the batch in hand is older than half
``flush_ms`` the thread stops yielding (the interpreter's switch interval still shares the
GIL) and what it has encoded is written at the end of the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from time import perf_counter_ns
from typing import Any, Callable

from .observer import WorkerObserver
from .writer import TraceWriter

log = logging.getLogger(__name__)

GATHER_S = 0.002
SLICE_NS = 50_000
YIELD_S = 0.00005
#: Queued events above which the worker stops yielding between slices.
BACKLOG = 2_000

FLUSH, STOP = 100, 101

#: Where each event kind keeps its ``perf_counter_ns`` (``events.py``).
_T_AT = (4, 3, 2, 3, 2, 2, 3)


def queued_at(ev: tuple[Any, ...], now: int) -> int:
    """When ``ev`` was queued (its own timestamp); ``now`` for a control event."""
    kind = ev[0]
    if kind < len(_T_AT):
        t = ev[_T_AT[kind]]
        if type(t) is int and t <= now:
            return t
    return now


class DrainThread:
    """The daemon thread, its control events and counters; subclasses say what a batch does."""

    def __init__(
        self,
        q: queue.SimpleQueue[Any],
        writer: TraceWriter,
        flush_ms: int,
        name: str,
        on_crash: Callable[[], None] | None,
        observer: WorkerObserver,
    ) -> None:
        #: Told from this thread only; woken for ``maybe_tick()`` when it is ``ticking``.
        self._observer = observer
        self._q = q
        self._writer = writer
        self._flush_ns = flush_ms * 1_000_000
        #: When the event of the oldest unflushed record was queued (``perf_counter_ns``).
        self._oldest: int | None = None
        #: When the first event of the batch in hand was queued.
        self._batch_t = 0
        self.events = 0
        self.exchanges = 0
        self.wakeups = 0
        self.max_slice_ns = 0
        self.catchups = 0
        self.crashed: str | None = None
        self.errors = 0  # events or exchanges our own code failed on (dropped, counted)
        self._on_crash = on_crash
        self._stop_sent = False
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def flush(self, timeout: float | None) -> bool:
        done = threading.Event()
        self._q.put((FLUSH, done))
        return done.wait(timeout) and self._writer.pending == 0

    def stop(self, timeout: float | None) -> bool:
        """Ask the thread to write everything and end (once); wait for it, from any caller."""
        if not self._stop_sent:
            self._stop_sent = True
            self._q.put((STOP, self.stopped))
        if not self.thread.is_alive() and not self.stopped.is_set():
            return False  # crashed before it could stop
        ok = self.stopped.wait(timeout)
        if ok:
            self.thread.join(timeout)
        return ok

    # -- what a subclass does ----------------------------------------------------------------

    def _account(self, backlog: int) -> None:
        """Total what is held now (``backlog`` events drained, not yet handled)."""
        raise NotImplementedError

    def _handle(self, batch: list[Any]) -> bool:
        """Process one drained batch; True when told to stop."""
        raise NotImplementedError

    def _flush(self, force: bool = False) -> None:
        raise NotImplementedError

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug of ours; keep the app alive
            self.crashed = repr(exc)
            log.critical("zltrace worker crashed; tracing stopped", exc_info=True)
            if self._on_crash is not None:
                self._on_crash()
            self.stopped.set()

    def _loop(self) -> None:
        q = self._q
        get = q.get
        while True:
            timeout = None
            if self._oldest is not None:
                # The next flush, or the writer's next retry when it is backing off.
                due = max(self._oldest + self._flush_ns, self._writer.retry_at)
                timeout = max(0.0, (due - perf_counter_ns()) / 1e9)
            observer = self._observer
            if observer.ticking:
                tick = observer.due()
                timeout = tick if timeout is None else min(timeout, tick)
            try:
                first = get(timeout=timeout)
            except queue.Empty:
                self._flush()
                if observer.ticking:
                    observer.maybe_tick()
                continue
            self.wakeups += 1
            if first[0] < FLUSH:
                time.sleep(GATHER_S)
            batch = [first]
            for _ in range(q.qsize()):
                batch.append(q.get_nowait())
            self._batch_t = queued_at(first, perf_counter_ns())
            self._account(len(batch))
            observer.batch(len(batch))
            if self._handle(batch):
                return
            if observer.ticking:
                observer.maybe_tick()

    def _may_yield(self, now: int, queued: int, throttled: bool) -> bool:
        """Whether to sleep between slices: not while behind (the module's rules)."""
        return queued < BACKLOG and not throttled and now - self._batch_t < self._flush_ns // 2

    def _unflushed_since(self) -> int:
        """The ``_oldest`` of a record added now: its batch's queue time (never after now)."""
        return self._batch_t or perf_counter_ns()

    def _error(self, what: str) -> None:
        self.errors += 1
        if self.errors == 1:
            log.error(
                "zltrace worker: a %s failed and was dropped (further ones counted)",
                what,
                exc_info=True,
            )
