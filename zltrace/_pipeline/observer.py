"""What the worker reports as it works: the :class:`WorkerObserver` protocol and a no-op.

The worker knows nothing of who watches it (the monitor implements this protocol and the
tracer wires the two together), as OpenTelemetry's batch processor reports to its metrics.
Every call comes from the worker thread (in standard mode, from the thread that writes)
and must be cheap: it is made inside the worker's slices of work, holding the GIL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .assembler import Finished


class WorkerObserver(Protocol):
    """Told what the worker does; asked when it wants to be woken (``ticking``, ``due``)."""

    #: Whether the worker should wake for :meth:`maybe_tick` even with nothing queued.
    ticking: bool

    def finished(self, out: Sequence[Finished]) -> None:
        """Exchanges the assembler just ended (before they are handed to the writer)."""

    def flushed(self) -> None:
        """The writer just wrote every record it held."""

    def hold_ns(self, ns: int) -> None:
        """The worker held the GIL for ``ns`` in one slice of work."""

    def batch(self, depth: int) -> None:
        """The worker drained ``depth`` queued events at once."""

    def due(self) -> float:
        """Seconds until the observer's next tick (0 if due now)."""

    def maybe_tick(self) -> None:
        """Tick if a tick is due."""


class NullObserver:
    """Observes nothing: the default when nobody watches the worker."""

    ticking = False

    def finished(self, out: Sequence[Finished]) -> None:
        pass

    def flushed(self) -> None:
        pass

    def hold_ns(self, ns: int) -> None:
        pass

    def batch(self, depth: int) -> None:
        pass

    def due(self) -> float:
        return 0.0

    def maybe_tick(self) -> None:
        pass


NULL_OBSERVER: WorkerObserver = NullObserver()
