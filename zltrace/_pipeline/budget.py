"""The memory budget (``Config.memory_pool_size``): what the trace holds, and what happens at
its limit. Owned by the worker thread; the caller only ever feels the last step below.

Held on the trace's behalf, in bytes, objects included (a one-byte read costs the memory of
a tuple, a ``bytes`` object and an ``int`` as well as its byte: counting payload only would let
a million tiny reads hold a hundred times the budget):

- exchanges still in flight (the assembler's ``bytes_held``): body bytes, the objects that hold
  them and the arrival times (:mod:`.inflight`),
- encoded lines not yet in the trace file, retry and memory-fallback lines included (the
  writer's ``pending_bytes``),
- events taken off the queue or still on it but not handled yet: their count times the mean
  payload per event seen so far plus ``EVENT_COST``, what an event's objects take (an estimate:
  counting bytes exactly would cost the caller a ``len()`` and an add per chunk, and the
  queue's item count is free).

The object sizes are this interpreter's, measured when the package is imported (:mod:`.sizes`).

Policy, in order (every step counted in ``stats()``):

1. Above ``HIGH`` (90%): the writer flushes at once, and response bodies of exchanges still in
   flight are spilled to the side file, largest first, down to ``LOW`` (50%). The record
   then points at the side-file extents; nothing is lost and the app notices nothing. This is
   what keeps a 1 GB streamed response within the budget.
2. Above ``RESUME`` (75%) in all, or with more than a quarter of the budget queued (the app
   reads faster than the worker can store, or a spill is blocked in ``write()`` by the
   kernel's writeback throttling): the queue is bounded to a quarter of the budget. An app
   thread that finds it full waits, polling every ``THROTTLE_POLL_S`` for at most
   ``THROTTLE_WAIT_S`` per chunk, until the worker has made room; the bound is lifted below
   ``LOW`` (50%) once callers fill the queue slowly again. Slower, but nothing lost -- the
   only time zero-latency mode makes the caller wait, and only while the budget is under
   pressure. (The check is a ``qsize()`` per chunk, paid only in that state.) The bound is
   set by the worker, so it can only follow what it sees: before it first runs in a burst
   (a loaded machine may not schedule it for tens of milliseconds) callers queue freely, and
   the held total can pass the budget by what they queued meanwhile.
3. Spilling impossible (the side file cannot be written) and still above the limit: bytes of
   in-flight bodies are dropped, largest first, and the exchange's record says so
   (``error.type`` ``zltrace.BodyDropped``, with the count); ``stats()["body_bytes_dropped"]``
   counts them. Lines held while the disk is gone are spilled to the dead-letter or
   fallback file as they near the budget, and dropped (oldest first, counted in
   ``records_lost``) only when no file takes them (see :mod:`.writer`). Both are logged at
   CRITICAL.
"""

from __future__ import annotations

import logging
from time import perf_counter_ns
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from .assembler import Assembler
    from .writer import TraceWriter

log = logging.getLogger(__name__)

HIGH = 0.90
RESUME = 0.75
LOW = 0.50
#: Longest a caller waits for the worker per chunk while throttled (never unbounded).
THROTTLE_WAIT_S = 1.0
THROTTLE_POLL_S = 0.0005
#: After a spill failed, the side file is tried again no sooner than this.
SPILL_RETRY_NS = 100_000_000


class Budget:
    """Thresholds and counters of one tracer's memory budget."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.high = int(limit * HIGH)
        self.resume = int(limit * RESUME)
        self.low = int(limit * LOW)
        self.held = 0  # last computed total
        self.peak = 0
        self.trims = 0  # times HIGH was crossed and the worker flushed and spilled
        self.spilled_bytes = 0
        self.throttles = 0  # times callers were made to wait
        self.throttled = False
        self.max_queued = 0  # events callers may queue while throttled
        self.dropped_bytes = 0
        self._retry_at = 0  # perf_counter_ns before which the side file is not tried again
        self._spill_error: OSError | None = None

    def update(self, held: int) -> int:
        self.held = held
        if held > self.peak:
            self.peak = held
        return held

    def press(
        self,
        held: int,
        queued: int,
        cost: int,
        on_pressure: Callable[[bool], None] | None,
        ending: bool = False,
        settled: bool = True,
    ) -> None:
        """Step 2: bound the queue once ``held`` passes ``resume`` or the ``queued`` bytes a
        quarter of the budget (``max_queued`` events of ``cost`` bytes); lift it below ``low``
        once the worker says the callers have ``settled`` (or at the end)."""
        quota = self.limit // 4  # what callers may queue while throttled
        if not self.throttled:
            if (held > self.resume or queued > quota) and not ending and on_pressure is not None:
                self.throttled = True
                self.throttles += 1
                self.max_queued = max(16, quota // cost)
                on_pressure(True)
        elif ending or (held < self.low and settled):
            self.throttled = False
            if on_pressure is not None:
                on_pressure(False)

    @property
    def utilisation(self) -> float:
        """Held bytes over the budget (may exceed 1.0 briefly)."""
        return self.held / self.limit

    def spill(self, asm: Assembler, writer: TraceWriter, target: int) -> None:
        """Steps 1 and 3: move in-flight bodies to the side file down to ``target`` bytes; if
        the side file cannot be written and the limit is passed, drop bytes (counted, logged).

        After a failed write the side file is left alone for ``SPILL_RETRY_NS``: with many
        small reads the budget is crossed again after a few of them, and trying the disk
        each time would cost a failed write per read."""
        now = perf_counter_ns()
        if now >= self._retry_at:
            self.trims += 1
            try:
                self.spilled_bytes += asm.spill(writer.spill, target, writer.side_bytes)
                return
            except OSError as exc:
                writer.failed("side file write (spill)", exc)
                self._retry_at = now + SPILL_RETRY_NS
                self._spill_error = exc
        if asm.bytes_held > self.limit:
            dropped = asm.drop_bodies(target)
            self.dropped_bytes += dropped
            log.critical(
                "zltrace: %d in-flight body bytes dropped: the memory budget (%d bytes) is "
                "full and the side file cannot be written (%s); %d dropped so far",
                dropped,
                self.limit,
                self._spill_error,
                self.dropped_bytes,
            )
