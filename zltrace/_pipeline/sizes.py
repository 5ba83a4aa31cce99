"""What the objects the memory budget counts take, measured with ``sys.getsizeof`` when this
module is imported (so they are this interpreter's, not guesses)."""

from __future__ import annotations

import sys
from time import perf_counter_ns

#: A reference in a list, a queue or a ``__slots__`` field.
SLOT = 8
#: A ``bytes`` object beside its payload.
BYTES_COST = sys.getsizeof(b"")
#: One event on the queue beside its payload: the tuple ``(DATA, ex, data, t)``, the ``bytes``
#: object, the ``int`` of its time (a ``perf_counter_ns`` value) and the queue's slot.
EVENT_COST = sys.getsizeof((0, 0, b"", 0)) + BYTES_COST + sys.getsizeof(perf_counter_ns()) + SLOT
