"""Side files read back by extent: a trace line's ``file``/``offset``/``size``, checked first.

Rules: a side file is a regular file named by a plain file name in the trace's own
directory (no path, no leading dot), and an extent must lie inside the file as it is now, so
a damaged line can neither read another file nor ask for more bytes than are on disk (the
size of a read is bounded by the file, never by a number in the line).
"""

from __future__ import annotations

import os
import stat

from ..exceptions import TraceLineError

__all__ = ["SideFiles"]


class SideFiles:
    """The side files of one trace file, opened on first use; :meth:`close` when done."""

    def __init__(self, directory: str) -> None:
        self._dir = directory
        self._fds: dict[str, int] = {}

    def _fd(self, name: str) -> int:
        if not name or os.sep in name or (os.altsep and os.altsep in name) or name[0] == ".":
            raise TraceLineError(f"side file name {name!r} is not a plain file name")
        fd = self._fds.get(name)
        if fd is None:
            # O_NONBLOCK: a FIFO of that name must not hang the reader (no effect on files).
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(os.path.join(self._dir, name), flags)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise TraceLineError(f"side file {name!r} is not a regular file")
            self._fds[name] = fd
        return fd

    def size(self, name: str) -> int:
        """The side file's size now (it may still be growing while its trace is written)."""
        return os.fstat(self._fd(name)).st_size

    def get(self, name: str, offset: int, size: int) -> bytes:
        """The ``size`` bytes at ``offset``; TraceLineError if they are not all in the file."""
        have = self.size(name)
        if offset > have or size > have - offset:
            raise TraceLineError(
                f"side file {name!r} has {have} bytes; [{offset}, +{size}] is past its end"
            )
        fd = self._fd(name)
        chunks = []
        while size:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                raise TraceLineError(f"side file {name!r} ends before offset {offset} + {size}")
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
