"""The trace files: encoding finished exchanges and writing them (worker thread).

Format (version 1; the README documents it and ``zltrace/trace-line.schema.json`` is its
JSON Schema): a JSON Lines file, one exchange per line, plus a side file of raw bytes.

- Bodies up to ``INLINE_MAX`` bytes are inline, as ``{"size", "text"}`` when they are valid
  UTF-8 (readable with ``jq``) or ``{"size", "base64"}`` otherwise.
- Larger bodies are appended raw to the side file ``<stem>.bodies`` and the line holds
  ``{"size", "file", "offset"}``. Escaping a large body into JSON would hold the GIL for
  milliseconds; ``os.writev`` of the caller's own ``bytes`` objects releases it, and copies
  nothing in Python. The body is written before its line, so a line never points at bytes
  that are not on disk.
- Arrival times of the response body (``reads``: flat ``[end_offset, t_ns, ...]``) are inline
  up to ``INLINE_READS`` pairs, else in the side file as little-endian int64 pairs.

Lines are buffered and written in batches by the caller of :meth:`TraceWriter.flush` (the
worker: at ``buffer_size`` records or after ``flush_ms``). Directory 0700, files 0600.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import sys
from array import array
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Callable

from ._assembler import Buffer, Finished
from ._json import js as _js

log = logging.getLogger("zltrace")

#: Largest body stored inline in the line. Measured on the worker (2-core VM, CPython 3.11,
#: ``TraceWriter.add`` of one exchange, median): 100 B body 2.8 us, 1 KiB 4.9 us, 4 KiB 11 us
#: (text) / 8.8 us (binary, base64); a body sent to the side file instead costs ~10 us
#: whatever its size, most of it in ``os.writev`` with the GIL released. At 4 KiB the two
#: cost the same, so larger bodies go to the side file.
INLINE_MAX = 4 * 1024
INLINE_READS = 256
_IOV_MAX = 1024

Opener = Callable[[str, int, int], int]


def _write_all(fd: int, buffers: Sequence[Buffer]) -> int:
    """``os.writev`` every buffer completely (partial writes resumed); returns bytes written."""
    total = 0
    pending = [memoryview(b) for b in buffers if len(b)]
    while pending:
        batch = pending[:_IOV_MAX]
        n = os.writev(fd, batch)
        total += n
        # Drop what was written; resume inside a buffer written only in part.
        i = 0
        while i < len(batch) and n >= len(batch[i]):
            n -= len(batch[i])
            i += 1
        rest = pending[i:]
        if n and rest:
            rest[0] = rest[0][n:]
        pending = rest
    return total


class TraceWriter:
    """One trace file and its side file; created on first use."""

    def __init__(self, directory: str, stem: str, opener: Opener = os.open) -> None:
        self.directory = directory
        self.path = os.path.join(directory, stem + ".jsonl")
        self.side_name = stem + ".bodies"
        self.side_path = os.path.join(directory, self.side_name)
        self._open = opener
        self._fd: int | None = None
        self._side_fd: int | None = None
        self._side_off = 0
        self._lines: list[bytes] = []
        self.records_written = 0
        self.bytes_written = 0
        self.batches = 0
        self.write_errors = 0
        self.records_lost = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        return len(self._lines)

    # -- files -------------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def _main_fd(self) -> int:
        if self._fd is None:
            self._ensure_dir()
            self._fd = self._open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return self._fd

    def _side(self) -> int:
        if self._side_fd is None:
            self._ensure_dir()
            fd = self._open(self.side_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._side_off = os.fstat(fd).st_size
            self._side_fd = fd
        return self._side_fd

    def _side_write(self, buffers: Sequence[Buffer]) -> int:
        """Append to the side file; return the offset where the data starts."""
        fd = self._side()
        offset = self._side_off
        try:
            n = _write_all(fd, buffers)
        except OSError:
            # Part of the data may be there; re-sync our offset with the file.
            self._side_off = os.fstat(fd).st_size
            raise
        self._side_off += n
        self.bytes_written += n
        return offset

    # -- encoding ----------------------------------------------------------------------------

    def _body(self, pieces: list[Buffer]) -> str:
        size = sum(len(p) for p in pieces)
        if size > INLINE_MAX:
            try:
                offset = self._side_write(pieces)
                return f'{{"size":{size},"file":{_js(self.side_name)},"offset":{offset}}}'
            except OSError as exc:
                self._failed("side file write", exc)  # falls through: inline, nothing lost
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        raw = bytes(data) if not isinstance(data, bytes) else data
        try:
            return f'{{"size":{size},"text":{_js(raw.decode("utf-8"))}}}'
        except UnicodeDecodeError:
            return f'{{"size":{size},"base64":"{base64.b64encode(raw).decode("ascii")}"}}'

    def _reads(self, reads: list[int]) -> str:
        if len(reads) <= 2 * INLINE_READS:
            return "[" + ",".join(map(str, reads)) + "]"
        arr = array("q", reads)
        if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
            arr.byteswap()
        try:
            offset = self._side_write([arr.tobytes()])
        except OSError as exc:
            self._failed("side file write", exc)
            return "[" + ",".join(map(str, reads)) + "]"
        return f'{{"count":{len(reads) // 2},"file":{_js(self.side_name)},"offset":{offset}}}'

    def add(self, f: Finished) -> None:
        """Encode one finished exchange (writing large bodies now) and buffer its line.

        The line is assembled from fragments rather than by ``json.dumps`` of a dict: the
        structure is fixed, and the whole worker path of a 1 KB exchange, replayed alone,
        went from 23.5 us to 14.5 us with it.
        """
        request_body = "null" if f.request_body is None else self._body(f.request_body)
        if f.response_json is None:
            response = "null"
        else:
            response = (
                f'{f.response_json},"body":{self._body(f.response_body or [])},'
                f'"reads":{self._reads(f.reads or [])}}}'
            )
        error = "null" if f.error is None else _encode(f.error)
        sent, head, first, end = f.timing
        line = (
            f'{{"v":1,"id":"{f.id}","logical_id":"{f.logical}","started_at":"{_iso(f.wall_ns)}",'
            f'"request":{f.request_json},"body":{request_body}}},"response":{response},'
            f'"outcome":"{f.outcome}","error":{error},"timing":{{"request_sent":{_n(sent)},'
            f'"headers_received":{_n(head)},"first_byte":{_n(first)},"end":{end}}}}}\n'
        )
        # Lone surrogates (from surrogateescape'd names or odd exception messages) can only be
        # inside JSON strings here; backslashreplace turns them into \udXXX escapes, which
        # keeps the line valid UTF-8 and valid JSON.
        self._lines.append(line.encode("utf-8", "backslashreplace"))

    # -- output ------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write the buffered lines; on failure keep them for the next try and return False."""
        if not self._lines:
            return True
        data = b"".join(self._lines)
        try:
            fd = self._main_fd()
            _write_all(fd, [data])
        except OSError as exc:
            self._failed("trace write", exc)
            return False
        self.records_written += len(self._lines)
        self.bytes_written += len(data)
        self.batches += 1
        self._lines.clear()
        return True

    def _failed(self, what: str, exc: OSError) -> None:
        self.write_errors += 1
        self.last_error = f"{what}: {exc}"
        if self.write_errors == 1:
            log.error(
                "zltrace: %s failed for %s: %s (records are kept and retried)", what, self.path, exc
            )

    def abandon(self) -> None:
        """Close the descriptors without writing (a forked child leaving the parent's files)."""
        for fd in (self._fd, self._side_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._side_fd = None
        self._lines = []

    def close(self) -> None:
        """Flush, fsync and close both files; lines that still cannot be written are lost
        (counted in ``records_lost`` and logged)."""
        if not self.flush():
            self.records_lost += len(self._lines)
            log.error(
                "zltrace: %d records could not be written to %s and are lost: %s",
                len(self._lines),
                self.path,
                self.last_error,
            )
            self._lines.clear()
        for fd in (self._fd, self._side_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._side_fd = None


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _n(value: int | None) -> str:
    return "null" if value is None else str(value)


_last_second: tuple[int, str] = (-1, "")


def _iso(wall_ns: int) -> str:
    """``2026-11-26T18:01:41.463344Z``; the part up to the second is cached (one tuple,
    replaced whole, so workers of several tracers can share it)."""
    global _last_second
    sec, ns = divmod(wall_ns, 1_000_000_000)
    last = _last_second
    if last[0] != sec:
        stamp = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        last = _last_second = (sec, stamp)
    return f"{last[1]}.{ns // 1000:06d}Z"
