"""Lines held in memory while no file takes them, stored compactly (worker thread).

Rules:
- A held batch is one zlib-compressed block of whole lines: trace lines repeat themselves
  (the same keys, hosts and headers line after line), so a block costs a fraction of its
  lines, and the memory budget holds that many more seconds of an outage.
- Held lines are charged what they cost: the compressed bytes plus the block's bookkeeping,
  not their encoded size.
- Blocks leave oldest first, whole: written somewhere (a block whose write fails stays), or
  dropped when nothing takes them.
"""

from __future__ import annotations

import sys
import zlib
from collections import deque
from collections.abc import Sequence
from typing import Callable

#: zlib level of held blocks: the fastest; the lines' repetition is what makes them small.
LEVEL = 1
#: What a block costs beside its compressed bytes: the bytes object, the tuple, the deque slot.
_BLOCK_OVERHEAD = sys.getsizeof(b"") + sys.getsizeof((0, 0, 0)) + 8

#: Takes whole lines (here one buffer) and the number of records in them; raises ``OSError``.
Sink = Callable[[Sequence[bytes], int], None]


def compress(data: bytes) -> bytes:
    return zlib.compress(data, LEVEL)


class HeldLines:
    """Compressed blocks of whole lines, oldest first; ``cost`` is what they take in memory."""

    def __init__(self) -> None:
        self._blocks: deque[tuple[bytes, int, int]] = deque()  # (block, records, raw bytes)
        self.records = 0
        self.cost = 0
        self.raw = 0  # encoded size of the lines held

    def __bool__(self) -> bool:
        return bool(self._blocks)

    def add(self, lines: Sequence[bytes]) -> None:
        """Hold ``lines`` (one block)."""
        data = b"".join(lines)
        block = compress(data)
        self._blocks.append((block, len(lines), len(data)))
        self.records += len(lines)
        self.cost += len(block) + _BLOCK_OVERHEAD
        self.raw += len(data)

    def drain(self, sink: Sink) -> None:
        """Hand every block to ``sink``, oldest first. An ``OSError`` from ``sink``
        propagates, the failed block and those after it still held."""
        while self._blocks:
            block, records, _ = self._blocks[0]
            sink([zlib.decompress(block)], records)
            self._pop()

    def drop_oldest(self) -> int:
        """Forget the oldest block; the records it held."""
        return self._pop()

    def clear(self) -> None:
        self._blocks.clear()
        self.records = self.cost = self.raw = 0

    def _pop(self) -> int:
        block, records, raw = self._blocks.popleft()
        self.records -= records
        self.cost -= len(block) + _BLOCK_OVERHEAD
        self.raw -= raw
        return records
