"""Body bytes left in a raw event log until they are asked for.

Reading a raw log keeps, per body, only where its bytes lie: ``(file, offset, size)``
extents, packed as flat integers (the file's index in the high bits of the offset). The
bytes are read with ``pread`` when :meth:`LazyBody.load` is called (``Response.raw_body``,
``Request.body``), and a chunked request body is de-framed then.

The files stay open while any body of theirs is referenced (a :class:`SharedFd` per file,
closed when the last exchange holding it is gone), so a body can be read after its trace was
removed or renamed, as with a JSONL trace, whose bodies are read with their line. A read
that fails gives the bytes read so far: it never raises.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._assembly.dechunk import ExtentDechunker

__all__ = ["FILE_SHIFT", "LazyBody", "SharedFd"]

#: Extents pack ``file index << FILE_SHIFT | offset``: files of up to 256 TiB.
FILE_SHIFT = 48
_MASK = (1 << FILE_SHIFT) - 1


class SharedFd:
    """A read-only descriptor, closed when the last holder lets go of it."""

    __slots__ = ("fd",)

    def __init__(self, path: str) -> None:
        # O_NONBLOCK: a FIFO put at a trace's name must not hang the reader.
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass


class LazyBody:
    """A body in one or more trace files: flat ``[packed offset, size, ...]`` extents."""

    __slots__ = ("_chunked", "_extents", "_files", "size")

    def __init__(
        self, files: Sequence[SharedFd | None], extents: list[int], chunked: bool = False
    ) -> None:
        self._files = tuple(files)
        self._extents = extents
        self._chunked = chunked
        #: Bytes in the file (before de-framing a chunked request body).
        self.size = sum(extents[1::2])

    def load(self) -> bytes:
        """The bytes (short if a file lost them; never raises for a file's state)."""
        out: list[bytes] = []
        ext = self._extents
        files = self._files
        for i in range(0, len(ext), 2):
            packed, size = ext[i], ext[i + 1]
            index, offset = packed >> FILE_SHIFT, packed & _MASK
            shared = files[index] if index < len(files) else None
            if shared is None:
                break
            while size:
                try:
                    chunk = os.pread(shared.fd, min(size, 1 << 24), offset)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                out.append(chunk)
                offset += len(chunk)
                size -= len(chunk)
        data = b"".join(out)
        if not self._chunked:
            return data
        d = ExtentDechunker()
        d.feed(data, 0)
        e = d.extents
        return b"".join(data[e[i] : e[i] + e[i + 1]] for i in range(0, len(e), 2))

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyBody):
            return self.load() == other.load()
        if isinstance(other, (bytes, bytearray)):
            return self.load() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<body of {self.size} bytes in {len(self._extents) // 2} extents>"
