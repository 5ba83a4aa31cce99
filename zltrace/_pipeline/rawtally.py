"""What the monitor needs of each exchange of a raw log, counted as its events pass.

The raw log's worker ends no exchange (that happens when the log is read), but the monitor's
figures are per exchange: the added time (fixed hooks, plus one body read per chunk and one
body send per piece after the head) and the lag from an exchange's end to its record on
disk. This tally keeps two counters per exchange in flight and reports an exchange when the
first of its end of stream, close, or error before any response passes -- what ends nearly
every exchange; one that never gets any is forgotten when the table is full, uncounted.
"""

from __future__ import annotations

from typing import Any

from . import events as ev_kinds

__all__ = ["Ended", "RawTally"]

#: Exchanges in flight beyond which the oldest is forgotten.
_MAX_OPEN = 4096


class Ended:
    """The parts of a finished exchange the monitor reads (``WorkerObserver.finished``)."""

    __slots__ = ("reads", "request_body", "timing", "wall_ns")

    def __init__(self, reads: int, sends: int, wall_ns: int) -> None:
        self.reads = range(2 * reads)  # sized like the flat [offset, t, ...] list
        self.request_body = range(sends) if sends else None
        self.wall_ns = wall_ns  # of the end: timing's end offset is 0
        self.timing = (None, None, None, 0)


class RawTally:
    """Per-exchange counts of body reads and sends, from the capture events."""

    def __init__(self, wall0_ns: int, perf0_ns: int) -> None:
        self._shift = wall0_ns - perf0_ns
        self._open: dict[int, list[int]] = {}  # exchange -> [reads, sends, head seen]

    def event(self, ev: tuple[Any, ...], out: list[Ended]) -> None:
        kind = ev[0]
        if kind == ev_kinds.DATA:
            c = self._open.get(ev[1])
            if c is not None:
                c[0] += 1
        elif kind == ev_kinds.SEND:
            c = self._open.get(ev[1])
            if c is not None:
                c[1] += 1
        elif kind == ev_kinds.START:
            self._open[ev[1]] = [0, 0, 0]
            if len(self._open) > _MAX_OPEN:
                del self._open[next(iter(self._open))]
        elif kind == ev_kinds.HEAD:
            c = self._open.get(ev[1])
            if c is not None:
                c[2] = 1
        elif kind in (ev_kinds.EOF, ev_kinds.CLOSE):
            self._end(ev[1], ev[2], out)
        elif kind == ev_kinds.ERROR:
            c = self._open.get(ev[1])
            if c is not None and not c[2]:
                self._end(ev[1], ev[3], out)

    def _end(self, ex: int, t: int, out: list[Ended]) -> None:
        c = self._open.pop(ex, None)
        if c is not None:
            # the first send carries the head (and a small body with it)
            out.append(Ended(c[0], max(0, c[1] - 1), t + self._shift))
