"""Following a growing raw event log: each exchange once it ends, with a resumable position.

Rules:

- The records of a trace and of its dead-letter file are scanned from where the last poll
  stopped (a record still being written waits for the next poll), merged by ``seq`` and
  applied to a :class:`RawAssembler`, as :class:`RawLog` does; an exchange is yielded when
  it ends.
- Exchanges interleave in the log: one may end after one that started later. The position
  after an exchange is therefore two things: the byte offset in the trace of the first
  record of any exchange still open (or not yet yielded), from which a restart scans again,
  and the ids of the exchanges yielded whose records lie at or past that offset, which the
  restart skips. The dead-letter file is scanned again from its start on a restart (it is
  short-lived: removed once copied back into the trace), so ids of exchanges found only in
  it are kept too. The ids are stored as ranges (exchange numbers are handed out in
  order), at most ``DONE_MAX`` of them, the oldest forgotten first.
- Files are held open during a poll only; bodies of exchanges yielded stay readable.
"""

from __future__ import annotations

import heapq
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import IO, Callable

from .._format_raw import CRC, MAX_PAYLOAD, PREAMBLE, RECORD, START
from ..exceptions import ZltraceWarning
from .decode import DEFAULT_DECODE_LIMITS
from .exchange import Exchange
from .lazybody import SharedFd
from .rawassemble import RawAssembler
from .rawscan import Record, RecordScanner

__all__ = ["DONE_MAX", "RawTail", "ranges", "unranges"]

#: Ids of yielded exchanges a position keeps at most (past them the oldest are forgotten).
DONE_MAX = 4096

_HEAD = RECORD.size
_CRC = CRC.size


def ranges(ids: list[int]) -> tuple[int, ...]:
    """Sorted ``ids`` as flat inclusive ranges ``(lo, hi, lo, hi, ...)``."""
    out: list[int] = []
    for i in sorted(set(ids)):
        if out and out[-1] + 1 == i:
            out[-1] = i
        else:
            out += (i, i)
    return tuple(out)


def unranges(flat: tuple[int, ...]) -> list[int]:
    """The ids :func:`ranges` packed (at most ``DONE_MAX`` of them, the highest)."""
    out: list[int] = []
    for i in range(len(flat) - 2, -1, -2):
        lo, hi = flat[i], flat[i + 1]
        out[:0] = range(max(lo, hi - (DONE_MAX - len(out)) + 1), hi + 1)
        if len(out) >= DONE_MAX:
            break
    return out


def _add(flat: list[int], n: int) -> None:
    """Add ``n`` to the flat inclusive ranges ``flat`` (kept sorted and merged)."""
    k = len(flat) - 2
    while k >= 0 and flat[k] > n:  # ids come mostly in order: found from the end
        k -= 2
    if k >= 0 and flat[k] <= n <= flat[k + 1]:
        return
    if k >= 0 and flat[k + 1] + 1 == n:
        flat[k + 1] = n
    else:
        k += 2
        flat[k:k] = (n, n)
    if k + 2 < len(flat) and flat[k + 1] + 1 == flat[k + 2]:
        flat[k + 1 : k + 3] = []  # joined with the next range


class _Assembler(RawAssembler):
    def open_ids(self) -> set[int]:
        return set(self._open)

    def is_open(self, ex_id: int) -> bool:
        return ex_id in self._open


def _number(ex: Exchange) -> int:
    """The exchange's number in its log (``run.N``)."""
    try:
        return int(ex.id.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return -1


class RawTail:
    """One raw trace (its files as for :class:`RawLog`: the trace last) followed incrementally.

    ``offset`` and ``done``: a position a previous tail gave (:meth:`poll`), or 0 and ``()``.
    """

    def __init__(
        self,
        paths: list[str],
        offset: int = 0,
        done: tuple[int, ...] = (),
        *,
        ident: tuple[int, int] = (0, 0),
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.paths = list(paths)
        #: The trace's (device, inode) when the tail was made (the caller compares).
        self.ident = ident
        self._t = len(self.paths) - 1  # the trace's index
        self._notify = warn
        self._scanners = [RecordScanner(p, self._warner(p), MAX_PAYLOAD) for p in self.paths]
        self._fds: list[SharedFd | None] = [None] * len(self.paths)
        self._files: list[IO[bytes] | None] = [None] * len(self.paths)
        self._asm = _Assembler(
            self.paths, self._fds, DEFAULT_DECODE_LIMITS, self._warner(self.paths[-1])
        )
        self._last_seq = 0
        self._last_file = -1
        self._resume = offset
        #: Where the next trace record not yet applied starts.
        self._next = offset
        #: Trace offset of the first record of each exchange open or not yet yielded.
        self._first: dict[int, int] = {}
        #: Exchanges open that started in the dead-letter file.
        self._dead: set[int] = set()
        #: Ids yielded (or to skip), with the trace offset of their first record (-1: none).
        self._done: OrderedDict[int, int] = OrderedDict((i, -1) for i in unranges(done))
        #: ``_done`` as :func:`ranges`, and the offset it was last pruned at.
        self._ranges: list[int] = list(ranges(list(self._done)))
        self._pruned_at = -1

    @property
    def read_to(self) -> int:
        """How far the trace has been scanned (bytes)."""
        return self._scanners[self._t].pos

    def _warner(self, path: str) -> Callable[[int, str], None]:
        notify = self._notify

        def warn(offset: int, what: str) -> None:
            text = f"{path}@{offset}: {what}"
            if notify is not None:
                notify(text)
            else:
                warnings.warn(text, ZltraceWarning, stacklevel=5)

        return warn

    def position(self, pending: set[int]) -> tuple[int, tuple[int, ...]]:
        """(rescan offset, yielded ids) from which a restart yields the rest."""
        live = self._asm.open_ids() | pending
        for e in [e for e in self._first if e not in live]:
            del self._first[e]
        self._dead &= live
        start = min(self._first.values(), default=self._next)
        start = min(start, self._next)
        if start != self._pruned_at:
            # The offset only grows: ids of exchanges wholly before it are needed no more.
            for e in [e for e, off in self._done.items() if 0 <= off < start]:
                del self._done[e]
            self._ranges = list(ranges(list(self._done)))
            self._pruned_at = start
        return start, tuple(self._ranges)

    def poll(self) -> Iterator[tuple[Exchange, int, tuple[int, ...]]]:
        """Each exchange ended since the last poll, with the position after it."""
        try:
            yield from self._poll()
        finally:
            for i, f in enumerate(self._files):
                if f is not None:
                    f.close()
                    self._files[i] = None
                self._fds[i] = None

    def _open(self, i: int) -> IO[bytes] | None:
        f = self._files[i]
        if f is None:
            try:
                shared = self._fds[i] = SharedFd(self.paths[i])
            except OSError:
                return None
            f = self._files[i] = open(shared.fd, "rb", closefd=False)  # noqa: SIM115
        return f

    def _poll(self) -> Iterator[tuple[Exchange, int, tuple[int, ...]]]:
        streams: list[Iterator[tuple[int, int, Record]]] = []
        for i, scanner in enumerate(self._scanners):
            f = self._open(i)
            if f is None:
                continue
            if i == self._t and self._resume:
                self._skip_to(scanner, f, self._resume)
            streams.append(_tagged(scanner.records(f, False), i))
        asm = self._asm
        out: list[Exchange] = []
        for seq, i, rec in heapq.merge(*streams):
            if asm.info is None and self._scanners[i].info is not None:
                asm.info = self._scanners[i].info
            if i == self._t:
                self._next = rec.offset + len(rec.payload) + _CRC
            if seq <= self._last_seq and i != self._last_file:
                continue  # in the dead-letter file and in the trace: once is enough
            self._last_seq, self._last_file = max(seq, self._last_seq), i
            asm.apply(rec, i, out)
            if i != self._t:
                if rec.kind == START:
                    self._dead.add(rec.ex)
                if not out:
                    continue
            ended = [_number(ex) for ex in out]
            if i == self._t and (rec.ex in ended or asm.is_open(rec.ex)):
                self._first.setdefault(rec.ex, rec.offset - _HEAD)
            for k, ex in enumerate(out):
                n = ended[k]
                if n in self._done:
                    self._done[n] = self._skip_from(n)
                    continue  # yielded before a restart
                self._done[n] = self._skip_from(n)
                _add(self._ranges, n)
                if len(self._done) > DONE_MAX:
                    for _ in range(DONE_MAX // 4):  # the oldest quarter: one rebuild
                        self._done.popitem(last=False)
                    self._pruned_at = -1
                start, done = self.position(set(ended[k + 1 :]))
                yield ex, start, done
            out.clear()

    def _skip_from(self, n: int) -> int:
        """The trace offset past which exchange ``n`` must stay skipped (-1: always)."""
        if n in self._dead:  # started in the dead-letter file, which a restart reads again
            self._dead.discard(n)
            return -1
        return self._first.get(n, -1)

    def _skip_to(self, scanner: RecordScanner, f: IO[bytes], offset: int) -> None:
        """Resume the trace at ``offset``, its FILE record (the clocks, the run) read first."""
        self._resume = 0
        if not scanner.started:
            for _ in scanner.records(f, False):
                break  # the preamble is checked and the FILE record read on the way
        if scanner.started and offset >= PREAMBLE.size:
            scanner.pos = offset


def _tagged(records: Iterator[Record], i: int) -> Iterator[tuple[int, int, Record]]:
    for rec in records:
        yield rec.seq, i, rec
