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

When writing fails (full disk, I/O error, a directory that vanished or turned read-only), no
record is dropped while there is anywhere to keep it:

1. The batch stays buffered and is retried with exponential backoff (``retry_backoff_ms``
   doubled per attempt, capped at ``MAX_BACKOFF_NS``, +-25% jitter so that many processes on
   one full disk do not retry in step). A write that failed half-way is cut back
   (``ftruncate``) to the last whole line, so a retry never glues a torn line to a good one.
2. After ``write_retries`` failed attempts the batch goes to the dead-letter file
   ``<stem>.deadletter.jsonl`` beside the trace (same format, so ``zltrace.read`` of the
   directory sees it) and later batches try the normal path again. So do the lines waiting
   out a backoff as soon as they exceed half of ``memory_limit`` (the backoff goes on):
   waiting with them would make the memory budget throttle the callers or spill their
   bodies to the disk that is failing.
3. If the dead-letter file cannot be written either, the lines stay in memory ("memory"
   mode; during a backoff new lines join them without another dead-letter attempt; one is
   made each time the retries run out), up to ``memory_limit`` bytes -- which leaves in-flight
   bodies only what the budget has left, so they may be spilled or dropped (see
   ``_budget.py``); beyond that the oldest lines are dropped, counted in
   ``records_lost`` and logged -- the one place where records can be lost.
4. After two batches in a row had to be dead-lettered the writer writes each line on its own
   ("immediate" mode, the spec's fallback): a failure then keeps only the lines not yet
   written. One successful batch returns it to "batched".
5. When a write to the trace succeeds again, lines kept in memory and the dead-letter file
   are re-driven into the trace (the dead-letter file is removed once copied).

A trace file removed under the writer (its directory deleted, log rotation) is noticed by
``st_nlink == 0`` before each batch and re-created, rather than written into a deleted inode.
Each change of mode is logged once at WARNING (later repeats at DEBUG) and counted.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import stat
import sys
import time
from array import array
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Callable

from .assembler import Buffer, Extent, Finished, Piece
from .jsonenc import js as _js

log = logging.getLogger("zltrace")

#: Largest body stored inline in the line. Measured on the worker (2-core VM, CPython 3.11,
#: ``TraceWriter.add`` of one exchange, median): 100 B body 2.8 us, 1 KiB 4.9 us, 4 KiB 11 us
#: (text) / 8.8 us (binary, base64); a body sent to the side file instead costs ~10 us
#: whatever its size, most of it in ``os.writev`` with the GIL released. At 4 KiB the two
#: cost the same, so larger bodies go to the side file.
INLINE_MAX = 4 * 1024
INLINE_READS = 256
_IOV_MAX = 1024
MAX_BACKOFF_NS = 5_000_000_000
#: Records dropped in memory mode are logged at most this often (with the count since).
LOSS_LOG_NS = 10_000_000_000
#: Consecutive dead-lettered batches after which lines are written one at a time.
DEGRADE_AFTER = 2
_COPY_BLOCK = 1 << 20

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

    def __init__(
        self,
        directory: str,
        stem: str,
        opener: Opener = os.open,
        *,
        retries: int = 5,
        backoff_ms: int = 100,
        memory_limit: int = 10 * 1024 * 1024,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.directory = directory
        self.path = os.path.join(directory, stem + ".jsonl")
        self.side_name = stem + ".bodies"
        self.side_path = os.path.join(directory, self.side_name)
        self.dead_path = os.path.join(directory, stem + ".deadletter.jsonl")
        self._open = opener
        self._clock = clock
        self._retries = retries
        self._backoff_ns = backoff_ms * 1_000_000
        self.memory_limit = memory_limit
        self._loss_log_at = 0  # clock time before which drops are counted, not logged
        self._unlogged_losses = 0
        self._fd: int | None = None
        self._size = 0  # where the last whole line of the trace file ends
        self._torn = False  # a failed append left part of a line that could not be cut
        self._side_fd: int | None = None
        self._side_off = 0
        self._lines: list[bytes] = []
        self._held: list[bytes] = []  # lines neither the trace nor the dead-letter file took
        self.pending_bytes = 0  # bytes of _lines and _held
        self._attempts = 0  # failed attempts of the current batch
        self.retry_at = 0  # clock value before which the batch is not tried again
        self._dead_records = 0  # records in the dead-letter file, not yet re-driven
        self._dead_copied = 0  # bytes of the dead-letter file already copied into the trace
        self._dead_streak = 0
        self.mode = "batched"
        self._modes_logged: set[str] = set()
        self.records_written = 0
        self.bytes_written = 0
        self.batches = 0
        self.write_errors = 0
        self.retries = 0
        self.dead_lettered_batches = 0
        self.dead_lettered_records = 0
        self.redriven_records = 0
        self.degradations = 0
        self.files_recreated = 0
        self.records_lost = 0
        self.last_error: str | None = None

    @property
    def pending(self) -> int:
        """Records not yet in the trace file or the dead-letter file."""
        return len(self._lines) + len(self._held)

    # -- files -------------------------------------------------------------------------------

    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.directory):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)

    def _main_fd(self) -> int:
        fd = self._fd
        if fd is not None and os.fstat(fd).st_nlink == 0:
            # Removed under us: writing on would put the records into a deleted inode.
            self._fd = None
            with contextlib.suppress(OSError):
                os.close(fd)
            self.files_recreated += 1
            self._note_mode("recreated", f"{self.path} was removed; writing a new file there")
            fd = None
        if fd is None:
            self._ensure_dir()
            fd = self._open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._size = os.fstat(fd).st_size
            self._fd = fd
        return fd

    def _side(self) -> int:
        fd = self._side_fd
        if fd is not None and os.fstat(fd).st_nlink == 0:
            self._side_fd = None
            with contextlib.suppress(OSError):
                os.close(fd)
            fd = None
        if fd is None:
            self._ensure_dir()
            fd = self._open(self.side_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._side_off = os.fstat(fd).st_size
            self._side_fd = fd
        return fd

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

    def spill(self, buffers: list[Buffer]) -> int:
        """Store body bytes of an exchange still in flight in the side file; their offset."""
        return self._side_write(buffers)

    def _parts(self, pieces: Sequence[Piece], size: int) -> str:
        """A body partly spilled already: the rest goes to the side file as well."""
        parts: list[str] = []
        run: list[Buffer] = []
        for p in [*pieces, None]:
            if isinstance(p, (bytes, memoryview)):
                run.append(p)
                continue
            if run:
                n = sum(len(b) for b in run)
                try:
                    parts.append(f"[{self._side_write(run)},{n}]")
                except OSError as exc:
                    # The side file broke after the spill: these bytes go inline instead.
                    self._failed("side file write", exc)
                    parts.append(f'"{base64.b64encode(b"".join(run)).decode("ascii")}"')
                run = []
            if isinstance(p, Extent):
                parts.append(f"[{p.offset},{p.size}]")
        return f'{{"size":{size},"file":{_js(self.side_name)},"parts":[{",".join(parts)}]}}'

    def _body(self, pieces: Sequence[Piece]) -> str:
        size = sum(len(p) for p in pieces)
        if any(isinstance(p, Extent) for p in pieces):
            return self._parts(pieces, size)
        buffers: Sequence[Buffer] = pieces  # type: ignore[assignment]  # no Extent: checked
        if size > INLINE_MAX:
            try:
                offset = self._side_write(buffers)
                return f'{{"size":{size},"file":{_js(self.side_name)},"offset":{offset}}}'
            except OSError as exc:
                self._failed("side file write", exc)  # falls through: inline, nothing lost
        data = buffers[0] if len(buffers) == 1 else b"".join(buffers)
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
        data = line.encode("utf-8", "backslashreplace")
        self._lines.append(data)
        self.pending_bytes += len(data)

    # -- output ------------------------------------------------------------------------------

    def flush(self, force: bool = False) -> bool:
        """Write the buffered lines; True when nothing is left pending.

        On failure the lines are kept and the next attempt is scheduled (``retry_at``);
        before then a flush returns False without trying, unless ``force``.
        """
        lines = self._lines
        if not lines:
            if (self._held or self._dead_records) and (force or self._clock() >= self.retry_at):
                self._redrive()
            return not self._held
        if not force and self._clock() < self.retry_at:
            if self.pending_bytes > self.memory_limit // 2:
                self._divert()
            return False
        try:
            self._write_lines(lines)
        except OSError as exc:
            self._failed("trace write", exc)
            self._attempts += 1
            if self._attempts > self._retries:
                self._dead_letter()
            else:
                self.retries += 1
                delay = min(self._backoff_ns << (self._attempts - 1), MAX_BACKOFF_NS)
                self.retry_at = self._clock() + int(delay * (0.75 + random.random() / 2))
                if self.pending_bytes > self.memory_limit // 2:
                    self._divert()
            return False
        self._attempts = 0
        self.retry_at = 0
        self._dead_streak = 0
        if self._held or self._dead_records:
            self._redrive()
        if self.mode != "batched" and not self._held:
            self._set_mode("batched", "writes work again")
        return not self._held

    def _write_lines(self, lines: list[bytes]) -> None:
        """Write ``lines`` to the trace file (removing each from the list once written)."""
        if self.mode == "immediate":
            while lines:
                self._append([lines[0]])
                self._done(lines[:1])
                del lines[0]
            return
        self._append(lines)
        self._done(lines)
        lines.clear()

    def _done(self, lines: list[bytes]) -> None:
        n = sum(len(x) for x in lines)
        self.pending_bytes -= n
        self.records_written += len(lines)
        self.bytes_written += n
        self.batches += 1

    def _append(self, lines: Sequence[bytes]) -> None:
        """Append whole lines to the trace file, or leave it as it was (cut back on failure)."""
        fd = self._main_fd()
        if self._torn:
            # A torn end that could not be cut back: end it, so it is one bad line of its
            # own (the reader skips it with a warning) and not glued to the next good one.
            self._size += _write_all(fd, [b"\n"])
            self._torn = False
        # One joined buffer, not a writev of the lines: for a batch of 100 lines of 1.5 KB,
        # join + write took 33 us and writev of 100 iovecs 43 us (the join itself: 2.5 us,
        # so a reused buffer would save nothing worth its code).
        data = lines[0] if len(lines) == 1 else b"".join(lines)
        try:
            self._size += _write_all(fd, [data])
        except OSError:
            self._torn = not _cut_back(fd, self._size)
            # Reopen for the next attempt: the descriptor itself may be what is broken (a
            # file on a filesystem that was remounted or went away).
            self._fd = None
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def _dead_letter(self) -> None:
        lines = self._lines
        self._attempts = 0
        self.retry_at = 0
        self._dead_streak += 1
        try:
            fd = self._open(self.dead_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                size = os.fstat(fd).st_size
                try:
                    _write_all(fd, lines)
                except OSError:
                    _cut_back(fd, size)
                    raise
            finally:
                os.close(fd)
        except OSError as exc:
            self._failed("dead-letter write", exc)
            self._set_mode("memory", "neither the trace nor the dead-letter file can be written")
            self._hold()
            return
        self.dead_lettered_batches += 1
        self.dead_lettered_records += len(lines)
        self._dead_records += len(lines)
        self.pending_bytes -= sum(len(x) for x in lines)
        lines.clear()
        if self._dead_streak >= DEGRADE_AFTER and self.mode == "batched":
            self._set_mode("immediate", "batched writes keep failing; writing record by record")

    def _divert(self) -> None:
        """Backing off with more than half the budget waiting: waiting on with it would make
        the budget throttle the callers or spill their bodies to the disk that is failing. The
        lines go to the dead-letter file now (in memory mode, where that failed already, they
        join the held lines without another attempt); the backoff itself goes on."""
        attempts, retry_at = self._attempts, self.retry_at
        if self.mode == "memory":
            self._hold()
        else:
            self._dead_letter()
        self._attempts, self.retry_at = attempts, retry_at

    def _hold(self) -> None:
        """Memory mode: the buffered lines join those held until a write works again."""
        self._held.extend(self._lines)
        self._lines.clear()
        self._trim_held()

    def _trim_held(self) -> None:
        """Keep the lines held in memory within ``memory_limit``: drop (and count) the oldest."""
        held = self._held
        drop = 0
        while held[drop:] and self.pending_bytes > self.memory_limit:
            self.pending_bytes -= len(held[drop])
            drop += 1
        if drop:
            del held[:drop]
            self.records_lost += drop
            self._unlogged_losses += drop
            now = self._clock()
            if now >= self._loss_log_at:  # at most one line per LOSS_LOG_NS, with the count
                self._loss_log_at = now + LOSS_LOG_NS
                log.critical(
                    "zltrace: %d records dropped: the disk is unwritable (%s) and the memory "
                    "budget (%d bytes) is full (%d lost so far)",
                    self._unlogged_losses,
                    self.last_error,
                    self.memory_limit,
                    self.records_lost,
                )
                self._unlogged_losses = 0

    def _redrive(self) -> None:
        """Copy what the dead-letter file and memory hold into the trace, now that it works."""
        try:
            if self._held:
                self._append(self._held)
                self._done(self._held)
                self.redriven_records += len(self._held)
                self._held.clear()
            if self._dead_records:
                self._copy_dead_letter()
        except OSError as exc:
            self._failed("re-drive", exc)
            self.retry_at = self._clock() + self._backoff_ns
            return
        if self.mode != "batched":
            self._set_mode("batched", "writes work again; held records re-driven")

    def _copy_dead_letter(self) -> None:
        # Whole lines only, and from where the last attempt stopped: a copy that fails half-way
        # neither leaves a torn line in the trace nor copies the first half twice next time.
        fd = os.open(self.dead_path, os.O_RDONLY)
        try:
            offset = self._dead_copied
            carry = b""
            while True:
                block = os.pread(fd, _COPY_BLOCK, offset + len(carry))
                if not block:
                    break
                data = carry + block
                cut = data.rfind(b"\n") + 1
                if cut:
                    self._append([data[:cut]])
                    self.bytes_written += cut
                    offset += cut
                    self._dead_copied = offset
                carry = data[cut:]
        finally:
            os.close(fd)
        # Every line is in the trace now. A crash between the copy and the unlink leaves the
        # lines in both files; ``zltrace.read`` yields each of those ids once.
        try:
            os.unlink(self.dead_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.truncate(self.dead_path, 0)
        self.redriven_records += self._dead_records
        self.records_written += self._dead_records
        self._dead_records = 0
        self._dead_copied = 0

    def _failed(self, what: str, exc: OSError) -> None:
        self.write_errors += 1
        self.last_error = f"{what}: {exc}"
        if self.write_errors == 1:
            log.error(
                "zltrace: %s failed for %s: %s (records are kept and retried)", what, self.path, exc
            )

    def _set_mode(self, mode: str, why: str) -> None:
        if mode == self.mode:
            return
        if mode != "batched":
            self.degradations += 1
        self.mode = mode
        self._note_mode(mode, why)

    def _note_mode(self, mode: str, why: str) -> None:
        if mode in self._modes_logged:
            level = logging.DEBUG
        else:
            level = logging.INFO if mode == "batched" else logging.WARNING
        self._modes_logged.add(mode)
        log.log(level, "zltrace: writer %s: %s (%s)", mode, why, self.path)

    def abandon(self) -> None:
        """Close the descriptors without writing (a forked child leaving the parent's files)."""
        for fd in (self._fd, self._side_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._side_fd = None
        self._lines = []
        self._held = []
        self.pending_bytes = 0
        self._dead_records = 0

    def close(self) -> None:
        """Write everything (trace, else dead-letter file), fsync and close both files.

        Lines that neither file takes are lost: counted in ``records_lost`` and logged.
        """
        if not self.flush(force=True) and self._lines:
            self._dead_letter()
        if self._unlogged_losses:
            log.critical(
                "zltrace: %d more records were dropped while the disk was unwritable "
                "(%d lost in all)",
                self._unlogged_losses,
                self.records_lost,
            )
            self._unlogged_losses = 0
        if self._held:
            self.records_lost += len(self._held)
            log.error(
                "zltrace: %d records could not be written to %s and are lost: %s",
                len(self._held),
                self.path,
                self.last_error,
            )
            self._held.clear()
            self.pending_bytes = 0
        for fd in (self._fd, self._side_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._side_fd = None


def _cut_back(fd: int, size: int) -> bool:
    """Remove the torn end of a failed append; False if a torn end may remain."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return True  # a device or pipe: nothing to cut, and nothing kept either
        if st.st_size > size:
            os.ftruncate(fd, size)
    except OSError:
        return False
    return True


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
