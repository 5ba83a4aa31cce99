"""The raw log's memory pool and the caller's side of its queue (caller thread).

Rules:
- The pool is one buffer of ``memory_pool_size`` bytes, allocated once, cut into slots of
  ``SLOT`` bytes. A payload of at most ``SLOT`` bytes of a ``POOLED`` kind (request bytes
  sent; response bytes read too if configured so) is copied into a slot on the caller
  thread and its event carries a ``memoryview`` of the slot instead of the caller's
  ``bytes``: that object is freed as soon as the caller drops it (not when the worker gets
  to it), and the pool's memory is reused, never allocated again. Other payloads go by
  reference.
- The free slots are a stack (an ``array`` of slot numbers): a caller takes one with
  ``pop()``, the worker gives it back with ``extend()`` once it has encoded the slot's
  event (the record is a copy). Each is a single call into C, atomic under the GIL, so a
  slot goes to one caller whatever the number of threads, and the slot given back last is
  the next one taken: hot memory is reused, and only as much of the buffer is ever touched
  (resident) as was in use at once. The copy into the slot (a ``memmove`` that holds the
  GIL) is done before the event is put on the queue, and the worker learns of a slot only
  from its event: it never reads a slot whose copy has not completed.
- Pool full (no free slot): the payload goes by reference -- nothing is lost and nobody
  waits here -- counted in ``overflows``, the worker woken, and its bytes count as bytes by
  reference (below).
- The caller never wakes the worker per event; the worker wakes on its own every
  ``flush_ms`` while there is traffic. After a whole period with nothing queued it sets
  ``idle`` and sleeps until told: the next event's caller sees the flag (an attribute read
  per event) and wakes it once. The worker sets the flag and then looks at the queue; a
  caller puts its event and then reads the flag: under the GIL one of the two sees the
  other, so an event is never left for an idle worker to miss.
- A caller wakes the worker early (``threading.Event.set``, the only lock taken here, at
  most once per mark) when ``buffer_size`` exchanges have started since the worker's last
  wake, when more than half the pool's slots are taken, or when bytes passed by reference
  since the last wake pass a quarter of ``memory_pool_size``. The tests of those marks are a compare
  of two integers on the caller's path; the marks are moved by the worker. The counters a
  caller bumps here (``+=`` on an attribute) can lose a count when two threads race; they
  only time a wake, which ``flush_ms`` bounds anyway.
- Bytes by reference are bounded where they are queued: a caller that queues response bytes
  while more than a quarter of ``memory_pool_size`` (payloads and their objects,
  ``EVENT_COST``) waits queued and not yet encoded wakes the worker and waits, polling every
  ``THROTTLE_POLL_S`` for at most ``THROTTLE_WAIT_S`` (never for good: a worker that is gone
  cannot hold the app), until the worker's count of what it encoded (``ref_done``, moved by
  the worker only) brings it back under. Counted in ``holds``. A count lost to a race makes
  the bound looser, never tighter. The worker's own throttle (:mod:`.budget`) stays the
  policy for everything else.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Iterable
from typing import Any, Callable

from .budget import THROTTLE_POLL_S, THROTTLE_WAIT_S
from .events import DATA, SEND, START
from .sizes import EVENT_COST

#: Payloads up to this many bytes are copied into the pool; larger ones go by reference.
SLOT = 512
#: The events whose payloads are copied: request bytes (heads, small body pieces). Response
#: bytes go by reference: copying them cost the caller more per chunk than holding the
#: ``bytes`` saved (bench/README.md, "The raw log's pool"); ``frozenset((SEND, DATA))``
#: copies both.
POOLED = frozenset((SEND,))
_PAYLOAD = frozenset((DATA, SEND))


class RawInlet:
    """Puts a raw tracer's events on its queue: small payloads copied into the pool."""

    def __init__(
        self,
        put: Callable[[Any], None],
        pool_size: int,
        buffer_size: int,
        slot: int | None = None,
        pooled: frozenset[int] | None = None,
    ) -> None:
        slot = SLOT if slot is None else slot
        self._q_put = put
        self._pooled = POOLED if pooled is None else pooled
        #: Set to wake the worker before its next timed wake.
        self.wake = threading.Event()
        self.slot = slot
        self.slots = pool_size // slot if slot else 0
        self._view = memoryview(bytearray(self.slots * slot))
        #: Free slot numbers, the last given back on top (taken by callers, given back by the
        #: worker).
        self._free = array("l", range(self.slots - 1, -1, -1))
        #: Fewer free slots than this wake the worker (once until it rearms).
        self._low = self.slots // 2
        self._armed = True
        self.buffer_size = buffer_size
        #: The exchange number whose start wakes the worker (0: set by the first start).
        self.wake_ex = 0
        self.ref_bytes = 0  # bytes passed by reference so far (an estimate: see above)
        #: Bytes by reference the worker has encoded (worker thread only).
        self.ref_done = 0
        #: What may wait by reference before a caller holds (0: no bound).
        self.ref_quota = pool_size // 4
        self.ref_wake = self.ref_quota
        self.holds = 0  # times a caller waited for the worker to catch up
        self.overflows = 0  # payloads that found the pool full and went by reference
        #: Early wakes asked for, by reason.
        self.wakes = {"exchanges": 0, "high_water": 0, "pool_full": 0, "idle": 0}
        #: Set by the worker when it sleeps until told (nothing queued for a whole period).
        self.idle = False

    def put(self, ev: tuple[Any, ...]) -> None:
        """Queue one event (caller thread); never blocks, never raises for a full pool."""
        kind = ev[0]
        why = None
        if kind in _PAYLOAD:
            data = ev[2]
            n = len(data)
            if 0 < n <= self.slot and kind in self._pooled:
                try:
                    i = self._free.pop()
                except IndexError:  # no free slot: by reference
                    i = -1
                if i >= 0:
                    off = i * self.slot
                    view = self._view[off : off + n]
                    view[:] = data
                    ev = (kind, ev[1], view, ev[3], i)
                    if self._armed and len(self._free) < self._low:
                        self._armed = False
                        why = "high_water"
                else:
                    self.overflows += 1
                    self.ref_bytes += n + EVENT_COST
                    why = "pool_full"
            else:
                # The event's objects too: a million one-byte reads hold far more than a MB.
                self.ref_bytes += n + EVENT_COST
                if self.ref_bytes >= self.ref_wake:
                    self.ref_wake = self.ref_bytes + self.ref_quota
                    why = "high_water"
        elif kind == START and ev[1] >= self.wake_ex:
            if self.wake_ex:
                why = "exchanges"
            self.wake_ex = ev[1] + self.buffer_size
        self._q_put(ev)
        if self.idle:  # the worker sleeps until told: this is the first event since
            self.idle = False
            why = "idle"
        if why is not None:  # after the put: the worker, once woken, finds the event
            self.wakes[why] += 1
            self.wake.set()
        if kind == DATA and self.ref_bytes - self.ref_done > self.ref_quota > 0:
            self._hold()

    def _hold(self) -> None:
        """Wait (bounded) for the worker to encode what waits by reference (caller thread)."""
        self.holds += 1
        self.wake.set()
        deadline = time.monotonic() + THROTTLE_WAIT_S
        while self.ref_bytes - self.ref_done > self.ref_quota and time.monotonic() < deadline:
            time.sleep(THROTTLE_POLL_S)

    # -- the worker's side -------------------------------------------------------------------

    @property
    def in_use(self) -> int:
        """Bytes of the pool taken and not given back yet (worker thread)."""
        return (self.slots - len(self._free)) * self.slot

    def release(self, ids: Iterable[int]) -> None:
        """The worker encoded the events of these slots: they may be reused."""
        self._free.extend(ids)

    def rearm(self, last_ex: int) -> None:
        """The worker woke: the marks count from here (worker thread)."""
        if last_ex:
            self.wake_ex = last_ex + self.buffer_size
        self._armed = True
        self.ref_wake = self.ref_bytes + self.ref_quota
