"""HTTP/1.1 chunked framing undone incrementally, as extents of where the payload lies.

The reader of a raw event log feeds each record's bytes with the offset they have in the
file, and keeps ``(offset, size)`` extents of the payload rather than the bytes, so a body is
read from the file only when it is asked for. Adjacent extents are merged. Rules as
http.client's: sizes in hex with optional extensions, a CRLF after each chunk's data, a
zero-size chunk and trailers ending at a blank line; bytes after the end belong to nobody. A
size line longer than ``MAX_LINE`` is an error (damage must not grow memory).
"""

from __future__ import annotations

__all__ = ["ExtentDechunker"]

MAX_LINE = 64 * 1024


class ExtentDechunker:
    """Incremental parser of chunked framing; collects the payload as file extents."""

    __slots__ = ("crlf_left", "done", "error", "extents", "left", "line", "state")

    SIZE, DATA, CRLF, TRAILER, DONE = range(5)

    def __init__(self) -> None:
        self.state = self.SIZE
        self.line = b""
        self.left = 0
        self.crlf_left = 0
        #: Flat ``[offset, size, offset, size, ...]`` of the payload in the file.
        self.extents: list[int] = []
        self.done = False
        self.error: str | None = None

    @property
    def at_boundary(self) -> bool:
        """Between chunks: nothing of a chunk or of a size line is pending."""
        return self.state in (self.SIZE, self.CRLF) and not self.line and not self.error

    def _keep(self, offset: int, size: int) -> None:
        ext = self.extents
        if ext and ext[-2] + ext[-1] == offset:
            ext[-1] += size
        else:
            ext += (offset, size)

    def feed(self, data: bytes, base: int) -> int:
        """Consume ``data`` (found at file offset ``base``); return its payload bytes."""
        n = len(data)
        i = 0
        got = 0
        while i < n:
            state = self.state
            if state == self.DATA:
                take = min(self.left, n - i)
                self._keep(base + i, take)
                i += take
                got += take
                self.left -= take
                if not self.left:
                    self.state = self.CRLF
                    self.crlf_left = 2
            elif state == self.CRLF:
                take = min(self.crlf_left, n - i)
                i += take
                self.crlf_left -= take
                if not self.crlf_left:
                    self.state = self.SIZE
            elif state == self.DONE:
                return got
            else:
                j = data.find(b"\n", i)
                if j < 0:
                    self.line += data[i:]
                    if len(self.line) > MAX_LINE:
                        self.error = "chunk size line too long"
                        self.state = self.DONE
                    return got
                line = self.line + data[i : j + 1]
                self.line = b""
                i = j + 1
                if state == self.TRAILER:
                    if line in (b"\r\n", b"\n"):
                        self.state = self.DONE
                        self.done = True
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size < 0:
                        raise ValueError
                except ValueError:
                    self.error = f"invalid chunk size line {line[:40]!r}"
                    self.state = self.DONE
                    return got
                if size == 0:
                    self.state = self.TRAILER
                else:
                    self.state = self.DATA
                    self.left = size
        return got
