"""What an exchange in flight holds of its response: body pieces, arrival times, their cost.

Worker thread (or the caller in standard mode), driven by the assembler.

Rules:
- Memory follows the bytes, not the number of reads. A piece smaller than ``COMPACT_BELOW``
  is copied into the exchange's current tail ``bytearray`` (at most ``TAIL_MAX`` bytes each):
  a million one-byte reads keep a few bytearrays alive, not a million ``bytes`` objects. The
  copy per read is bounded by ``COMPACT_BELOW``, so it never holds the GIL long; larger pieces
  stay references to the caller's own ``bytes`` (or ``memoryview`` slices of them), never
  copied, as the writer hands them to ``os.writev``.
- Arrival times are packed in an ``array('q')``: flat ``(end offset, ns after the start)``
  pairs, 16 bytes a read instead of two ``int`` objects and two list slots.
- ``cost`` is what these objects take, measured (``sys.getsizeof`` and ``__sizeof__``), not
  the payload only; the memory budget adds it up.
- Under memory pressure both go to the side file: the body as extents, the arrival times as
  blocks of little-endian int64 pairs. The trace line wants the times of a body as one
  block, so times spilled in flight are gathered at the end: read back and appended again in
  bounded blocks (``GATHER_BLOCK``), never all in memory at once.
- The recorded bytes and times are exactly those of the reads, in order, whatever was
  compacted or spilled.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import Callable, Union

from .finished import Buffer, Extent, Piece, StoredReads
from .sizes import BYTES_COST, SLOT

#: Pieces below this size are copied into the tail; larger ones are kept by reference.
COMPACT_BELOW = 2048
#: A tail ``bytearray`` takes at most this many bytes; then a new one starts (so growing it
#: never reallocates more than this much at once).
TAIL_MAX = 64 * 1024
#: Arrival times are spilled only when they take at least this much (256 reads).
TIMES_SPILL_MIN = 4096
#: Spilled arrival times are read back and appended in blocks of at most this size.
GATHER_BLOCK = 1 << 20

VIEW_COST = sys.getsizeof(memoryview(b""))
#: A spilled extent of a body (an :class:`Extent` and its two ints) or of arrival times (a
#: tuple of two ints).
EXTENT_COST = sys.getsizeof(Extent(0, 0)) + 2 * sys.getsizeof(1 << 40)
SPAN_COST = sys.getsizeof((0, 0)) + 2 * sys.getsizeof(1 << 40)
_BYTEARRAY_BASE = bytearray().__sizeof__()
_ARRAY_BASE = array("q").__sizeof__()

#: Appends buffers to the side file; returns their offset. Raises ``OSError``.
Store = Callable[[Sequence[Buffer]], int]
#: Reads ``size`` bytes of the side file at ``offset`` back. Raises ``OSError``.
Load = Callable[[int, int], bytes]
#: A piece while the exchange is in flight: a tail (``bytearray``) besides the finished kinds.
Held = Union[bytes, bytearray, memoryview, Extent]

_BIG_ENDIAN = sys.byteorder != "little"


class InFlight:
    """The response body of an exchange in flight (payload only: chunk framing already cut
    away) and its arrival times: flat ``(end offset, ns after the start)`` pairs."""

    __slots__ = (
        "_arr_cap",
        "_ref",
        "_tail_cap",
        "arr",
        "cost",
        "first",
        "items",
        "size",
        "spilled",
        "spilled_pairs",
        "tail",
    )

    def __init__(self) -> None:
        self.items: list[Held] = []
        self.tail: bytearray | None = None  # the bytearray small pieces go to, if any
        self._tail_cap = 0  # bytes the tail takes before it reallocates
        self._ref: bytes | None = None  # the caller's bytes the last slice kept alive
        self.size = 0  # payload bytes
        self.arr = array("q")
        self._arr_cap = 0  # numbers the array takes before it reallocates
        self.spilled: list[tuple[int, int]] = []  # (offset, size) of times in the side file
        self.spilled_pairs = 0
        self.first: int | None = None  # ns of the first arrival
        self.cost = sys.getsizeof(self.items) + self.arr.__sizeof__() + sys.getsizeof(self.spilled)

    @property
    def count(self) -> int:
        """Arrivals in all."""
        return self.spilled_pairs + len(self.arr) // 2

    def add(self, data: bytes, t: int) -> int:
        """Keep a whole read and its arrival (``t``: ns after the start); the memory added.

        The common path of every read: written out, not split into helpers."""
        n = len(data)
        size = self.size = self.size + n
        cost = 0
        if n < COMPACT_BELOW:
            tail = self.tail
            if tail is None or len(tail) + n > TAIL_MAX:
                cost += self._new_tail()
                tail = self.tail
                assert tail is not None
            try:
                tail += data
            except BufferError:  # pragma: no cover - a view of the tail is alive somewhere
                cost += self._new_tail()
                tail = self.tail
                assert tail is not None
                tail += data
            if len(tail) > self._tail_cap:
                cost += self._tail_grew(tail)
        else:
            self.items.append(data)
            self.tail = None  # later small pieces go after this one
            cost += n + BYTES_COST + SLOT
        arr = self.arr
        arr.append(size)
        arr.append(t)
        if len(arr) > self._arr_cap:
            cost += self._arr_grew()
        if self.first is None:
            self.first = t
        self.cost += cost
        return cost

    def add_slice(self, data: bytes, start: int, stop: int) -> None:
        """Keep ``data[start:stop]`` (payload inside a read that carried chunk framing);
        its arrival is told by :meth:`arrived`."""
        n = stop - start
        self.size += n
        if n < COMPACT_BELOW:
            tail = self.tail
            if tail is None or len(tail) + n > TAIL_MAX:
                self.cost += self._new_tail()
                tail = self.tail
                assert tail is not None
            try:
                tail += memoryview(data)[start:stop]
            except BufferError:  # pragma: no cover - a view of the tail is alive somewhere
                self.cost += self._new_tail()
                tail = self.tail
                assert tail is not None
                tail += memoryview(data)[start:stop]
            if len(tail) > self._tail_cap:
                self.cost += self._tail_grew(tail)
            return
        self.tail = None
        if start == 0 and stop == len(data):  # all payload: the read itself, not a view
            self.items.append(data)
            self.cost += n + BYTES_COST + SLOT
            return
        self.items.append(memoryview(data)[start:stop])
        self.cost += VIEW_COST + SLOT
        if data is not self._ref:  # the slice keeps the whole read alive, framing included
            self._ref = data
            self.cost += len(data) + BYTES_COST

    def arrived(self, t: int) -> None:
        """The payload kept so far arrived at ``t`` (ns after the start)."""
        arr = self.arr
        arr.append(self.size)
        arr.append(t)
        if len(arr) > self._arr_cap:
            self.cost += self._arr_grew()
        if self.first is None:
            self.first = t

    def _new_tail(self) -> int:
        tail = self.tail = bytearray()
        self.items.append(tail)
        self._tail_cap = 0
        return tail.__sizeof__() + SLOT

    def _tail_grew(self, tail: bytearray) -> int:
        """The tail reallocated: the memory it added."""
        before = _BYTEARRAY_BASE + self._tail_cap + (1 if self._tail_cap else 0)
        now = tail.__sizeof__()
        self._tail_cap = now - _BYTEARRAY_BASE - 1  # one byte of it is a terminating NUL
        return now - before

    def _arr_grew(self) -> int:
        arr = self.arr
        before = _ARRAY_BASE + self._arr_cap * arr.itemsize
        now = arr.__sizeof__()
        self._arr_cap = (now - _ARRAY_BASE) // arr.itemsize
        return now - before

    def spill(self, store: Store, times: bool) -> int:
        """Move the body held in memory to the side file (``store``), and the arrival times
        too with ``times``, when they are worth it. Returns the bytes moved; ``OSError``
        propagates, nothing changed."""
        moved = 0
        items = self.items
        buffers = [_buffer(p) for p in items if not isinstance(p, Extent)]
        if buffers:
            size = sum(len(b) for b in buffers)
            kept = [p for p in items if isinstance(p, Extent)]
            offset = store(buffers)
            last = kept[-1] if kept else None
            if last is not None and last.offset + last.size == offset:
                kept[-1] = Extent(last.offset, last.size + size)
            else:
                kept.append(Extent(offset, size))
            items[:] = kept
            self.tail = None
            self._ref = None
            moved += size
        arr = self.arr
        if times and len(arr) * arr.itemsize >= TIMES_SPILL_MIN:
            data = _le(arr)
            offset = store([data])
            spilled = self.spilled
            if spilled and spilled[-1][0] + spilled[-1][1] == offset:
                spilled[-1] = (spilled[-1][0], spilled[-1][1] + len(data))
            else:
                spilled.append((offset, len(data)))
            self.spilled_pairs += len(arr) // 2
            self.arr = array("q")
            self._arr_cap = 0
            moved += len(data)
        self._recost()
        return moved

    def drop(self) -> tuple[int, int]:
        """Forget the body bytes and arrival times held in memory (last resort: the budget is
        full and the side file cannot be written); how many bytes and arrivals."""
        items = self.items
        size = sum(len(p) for p in items if not isinstance(p, Extent))
        items[:] = [p for p in items if isinstance(p, Extent)]
        pairs = len(self.arr) // 2
        self.tail = None
        self._ref = None
        self.arr = array("q")
        self._arr_cap = 0
        self._recost()
        return size, pairs

    def _recost(self) -> None:
        """The cost once nothing but extents is held (after a spill or a drop)."""
        self.cost = (
            sys.getsizeof(self.items)
            + len(self.items) * (EXTENT_COST + SLOT)
            + self.arr.__sizeof__()
            + sys.getsizeof(self.spilled)
            + len(self.spilled) * SPAN_COST
        )

    def pieces(self) -> list[Piece]:
        """The pieces as the writer takes them (a tail becomes a ``memoryview`` of itself)."""
        return [p if isinstance(p, Extent) else _buffer(p) for p in self.items]

    def reads(self, store: Store | None, load: Load | None) -> Sequence[int] | StoredReads:
        """All arrival pairs for the record: in memory, or gathered into one side-file block
        when some were spilled. Raises ``OSError`` when they cannot be gathered."""
        if not self.spilled:
            return self.arr
        if store is None or load is None:  # pragma: no cover - spilled implies both known
            raise OSError("arrival times were spilled but cannot be read back")
        start: int | None = None
        end = 0

        def append(data: bytes) -> None:
            nonlocal start, end
            offset = store([data])
            if start is None:
                start = offset
            elif offset != end:
                raise OSError("the side file moved while arrival times were gathered")
            end = offset + len(data)

        for offset, size in self.spilled:
            done = 0
            while done < size:
                n = min(GATHER_BLOCK, size - done)
                data = load(offset + done, n)
                if len(data) != n:
                    raise OSError(f"side file: {len(data)} of {n} bytes read back at {offset}")
                append(data)
                done += n
        if self.arr:
            append(_le(self.arr))
        assert start is not None
        return StoredReads(start, self.count)


def _buffer(p: bytes | bytearray | memoryview) -> Buffer:
    # A memoryview of a bytearray pins its size: taken only of a tail nobody grows again.
    return memoryview(p) if isinstance(p, bytearray) else p


def _le(arr: array[int]) -> bytes:
    if _BIG_ENDIAN:  # pragma: no cover - big-endian hosts
        arr = array("q", arr)
        arr.byteswap()
    return arr.tobytes()
