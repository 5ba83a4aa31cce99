"""The records of a raw event log, found and checked one at a time (layout: ``_format_raw``).

Rules:
- Nothing in a file makes the scanner raise. A record is used only when its sync bytes,
  its length (at most ``max_payload``) and its checksum hold; anything else is damage,
  reported through ``warn`` once per damaged stretch, and the scanner moves on to the next
  place where a whole, checked record starts.
- A record that runs past the end of the file is a tail still being written (or torn by a
  crash): :meth:`RecordScanner.records` stops before it and resumes there when called again
  (a live trace grows); with ``final`` it is reported as torn, unless a good record follows
  it (then it was damage).
- Memory: one record's payload at a time (at most ``max_payload``), plus what a resync reads
  in blocks.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple

from .._format_raw import CRC, FILE, MAGIC, MAX_PAYLOAD, PREAMBLE, RAW_VERSION, RECORD, SYNC

__all__ = ["FileInfo", "Record", "RecordScanner", "is_raw_log"]

_HEAD = RECORD.size
_CRC = CRC.size
_BLOCK = 1 << 20


def is_raw_log(path: str) -> bool:
    """Whether ``path`` starts with the raw log's magic (False if it cannot be read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not hang
    except OSError:
        return False
    try:
        return os.pread(fd, len(MAGIC), 0) == MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


class Record(NamedTuple):
    kind: int
    flags: int
    seq: int
    ex: int
    t: int
    #: Where the payload starts in the file.
    offset: int
    payload: bytes


class FileInfo(NamedTuple):
    """What a file's FILE record says."""

    run: str
    wall_ns: int
    perf_ns: int
    pid: int
    host: str


def _info(payload: bytes) -> FileInfo | None:
    try:
        obj = json.loads(payload)
        run, wall, perf = obj["run"], obj["wall_ns"], obj["perf_ns"]
        pid, host = obj.get("pid", 0), obj.get("host", "")
    except (ValueError, TypeError, KeyError, RecursionError, AttributeError):
        return None
    if not (
        isinstance(run, str)
        and run
        and type(wall) is int
        and type(perf) is int
        and abs(wall) < 1 << 62
        and abs(perf) < 1 << 62
        and type(pid) is int
        and isinstance(host, str)
    ):
        return None
    return FileInfo(run, wall, perf, pid, host)


Warn = Callable[[int, str], None]


class RecordScanner:
    """The checked records of one raw log file, read incrementally from where it stopped."""

    def __init__(self, path: str, warn: Warn, max_payload: int = MAX_PAYLOAD) -> None:
        self.path = path
        self._warn = warn
        self._max = max_payload
        self.pos = 0  # the next byte to look at
        self.started = False  # preamble checked
        self.unusable = False  # not a raw log of a version we read: nothing more from it
        self.info: FileInfo | None = None
        self._damaged_at: int | None = None  # start of the damaged stretch being skipped

    def records(self, f: Any, final: bool) -> Iterator[Record]:
        """Records from :attr:`pos` to the end of what ``f`` (a binary file) holds now."""
        if self.unusable:
            return
        if not self.started:
            f.seek(0)
            pre = f.read(PREAMBLE.size)
            if len(pre) < PREAMBLE.size:
                if final and pre:
                    self._note(0, "a raw log shorter than its preamble (torn)")
                    self.unusable = True
                return
            magic, version, _, _ = PREAMBLE.unpack(pre)
            if magic != MAGIC:
                self._note(0, "not a raw event log (bad magic)")
                self.unusable = True
                return
            if version != RAW_VERSION:
                self._note(0, f"raw log format version {version}, this reader reads {RAW_VERSION}")
                self.unusable = True
                return
            self.started = True
            self.pos = PREAMBLE.size
        while True:
            rec, status = self._at(f, self.pos)
            if rec is not None:
                if self._damaged_at is not None:
                    self._note(
                        self._damaged_at,
                        f"{self.pos - self._damaged_at} damaged bytes skipped",
                    )
                    self._damaged_at = None
                self.pos = rec.offset + len(rec.payload) + _CRC
                if rec.kind == FILE:
                    info = _info(rec.payload)
                    if info is None:
                        self._note(rec.offset - _HEAD, "unusable FILE record")
                    elif self.info is None:
                        self.info = info
                    continue
                yield rec
                continue
            if status == "end":
                if final and self._damaged_at is not None:
                    self._note(self._damaged_at, "damaged bytes at the end skipped")
                    self._damaged_at = None
                return
            if status == "short":
                if not final:
                    return  # being written: try again later
                nxt = self._resync(f, self.pos + 1)
                if nxt is None:
                    start = self._damaged_at if self._damaged_at is not None else self.pos
                    self._note(start, "torn last record (the writer was interrupted)")
                    self._damaged_at = None
                    self.pos = self._size(f)
                    return
                if self._damaged_at is None:
                    self._damaged_at = self.pos
                self.pos = nxt
                continue
            # damage: find the next good record
            if self._damaged_at is None:
                self._damaged_at = self.pos
            nxt = self._resync(f, self.pos + 1)
            if nxt is None:
                if final:
                    self._note(self._damaged_at, "damaged bytes at the end skipped")
                    self._damaged_at = None
                    self.pos = self._size(f)
                # Not final: the rest may still be being written; look again from here later.
                return
            self.pos = nxt

    def _note(self, offset: int, what: str) -> None:
        self._warn(offset, what)

    @staticmethod
    def _size(f: Any) -> int:
        return os.fstat(f.fileno()).st_size

    def _at(self, f: Any, pos: int) -> tuple[Record | None, str]:
        """The record at ``pos``: (record, "ok"), or (None, "end" | "short" | "bad")."""
        f.seek(pos)
        head = f.read(_HEAD)
        if not head:
            return None, "end"
        if len(head) < _HEAD:
            return None, "short"
        sync, kind, flags, n, seq, ex, t = RECORD.unpack(head)
        if sync != SYNC or n > self._max:
            return None, "bad"
        rest = f.read(n + _CRC)
        if len(rest) < n + _CRC:
            return None, "short"
        payload = rest[:n]
        (crc,) = CRC.unpack_from(rest, n)
        if zlib.crc32(payload, zlib.crc32(head[2:])) != crc:
            return None, "bad"
        return Record(kind, flags, seq, ex, t, pos + _HEAD, payload), "ok"

    def _resync(self, f: Any, start: int) -> int | None:
        """The offset of the next whole, checked record at or after ``start``, if any."""
        pos = start
        while True:
            f.seek(pos)
            block: bytes = f.read(_BLOCK)
            if not block:
                return None
            i = 0
            while True:
                j = block.find(SYNC, i)
                if j < 0:
                    break
                rec, _ = self._at(f, pos + j)
                if rec is not None:
                    return pos + j
                i = j + 1
            if len(block) < _BLOCK:
                return None
            pos += len(block) - 1  # a sync split over two blocks is found in the next
