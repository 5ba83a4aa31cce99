"""The write policy: batches of trace lines, and what happens when writing fails.

Lines are encoded by :mod:`.lines`, buffered, and written in batches by the caller of
:meth:`TraceWriter.flush` (the worker: at ``buffer_size`` records or after ``flush_ms``). The
files themselves (opening, re-creating, cutting back torn lines) are :mod:`.files`.

When writing fails (full disk, I/O error, a directory that vanished or turned read-only), no
record is dropped while there is anywhere to keep it:

1. The batch stays buffered and is retried with exponential backoff (``retry_backoff_ms``
   doubled per attempt, capped at ``MAX_BACKOFF_NS``, +-25% jitter so that many processes on
   one full disk do not retry in step).
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
   :mod:`.budget`); beyond that the oldest lines are dropped, counted in ``records_lost``
   and logged -- the one place where records can be lost.
4. After ``DEGRADE_AFTER`` batches in a row had to be dead-lettered the writer writes each
   line on its own ("immediate" mode): a failure then keeps only the lines not yet written.
   One successful batch returns it to "batched".
5. When a write to the trace succeeds again, lines kept in memory and the dead-letter file
   are re-driven into the trace (the dead-letter file is removed once copied).

Each change of mode is logged once at WARNING (later repeats at DEBUG) and counted.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from typing import Callable

import attrs

from .._format import DEAD_LETTER_SUFFIX, SIDE_SUFFIX, TRACE_SUFFIX
from .files import DeadLetterFile, Opener, SideFile, TraceFile
from .finished import Buffer, Finished
from .lines import LineEncoder

__all__ = ["Opener", "TraceWriter"]

log = logging.getLogger(__name__)

MAX_BACKOFF_NS = 5_000_000_000
#: Records dropped in memory mode are logged at most this often (with the count since).
LOSS_LOG_NS = 10_000_000_000
#: Consecutive dead-lettered batches after which lines are written one at a time.
DEGRADE_AFTER = 2


@attrs.define
class Backoff:
    """Failed attempts of the current batch, and the clock time before which none is made."""

    retries: int
    first_ns: int
    clock: Callable[[], int]
    attempts: int = 0
    retry_at: int = 0

    def due(self) -> bool:
        return self.clock() >= self.retry_at

    def failed(self) -> bool:
        """Count a failed attempt and schedule the next; False once the retries are used up."""
        self.attempts += 1
        if self.attempts > self.retries:
            return False
        delay = min(self.first_ns << (self.attempts - 1), MAX_BACKOFF_NS)
        self.retry_at = self.clock() + int(delay * (0.75 + random.random() / 2))
        return True

    def pause(self) -> None:
        """Wait one first delay (a re-drive failed) without counting an attempt."""
        self.retry_at = self.clock() + self.first_ns

    def reset(self) -> None:
        self.attempts = 0
        self.retry_at = 0


@attrs.define
class LossReport:
    """Records dropped in memory mode: logged at most once per ``LOSS_LOG_NS``, with counts."""

    log_at: int = 0  # clock time before which drops are counted, not logged
    unlogged: int = 0


class WriteCounts:
    """What the writer has done, for ``stats()``: counters bumped on the writing thread."""

    records_written = 0
    bytes_written = 0  # trace and side file
    batches = 0
    write_errors = 0
    retries = 0
    dead_lettered_batches = 0
    dead_lettered_records = 0
    redriven_records = 0
    degradations = 0
    files_recreated = 0
    records_lost = 0
    last_error: str | None = None


class TraceWriter(WriteCounts):
    """One trace file, its side file and its dead-letter file; created on first use."""

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
        base = os.path.join(directory, stem)
        self._trace = TraceFile(base + TRACE_SUFFIX, opener, self._recreated)
        self._side = SideFile(base + SIDE_SUFFIX, opener)
        self._dead = DeadLetterFile(base + DEAD_LETTER_SUFFIX, opener)
        self._encoder = LineEncoder(stem + SIDE_SUFFIX, self.spill, self.failed)
        self._backoff = Backoff(retries, backoff_ms * 1_000_000, clock)
        self._losses = LossReport()
        self._clock = clock
        self.memory_limit = memory_limit
        self._lines: list[bytes] = []  # encoded, not yet written
        self._held: list[bytes] = []  # lines neither the trace nor the dead-letter file took
        self.pending_bytes = 0  # bytes of _lines and _held
        self._dead_streak = 0  # batches dead-lettered in a row
        self.mode = "batched"
        self._modes_logged: set[str] = set()

    @property
    def path(self) -> str:
        return self._trace.path

    @property
    def pending(self) -> int:
        """Records not yet in the trace file or the dead-letter file."""
        return len(self._lines) + len(self._held)

    @property
    def retry_at(self) -> int:
        """Clock time before which a flush does not try to write again."""
        return self._backoff.retry_at

    # -- input -------------------------------------------------------------------------------

    def spill(self, buffers: Sequence[Buffer]) -> int:
        """Store body bytes in the side file (large bodies, or bodies of exchanges still in
        flight under memory pressure); their offset. Raises ``OSError``."""
        offset = self._side.append(buffers)
        self.bytes_written += self._side.end - offset
        return offset

    def add(self, f: Finished) -> None:
        """Encode one finished exchange (writing large bodies now) and buffer its line."""
        data = self._encoder.encode(f)
        self._lines.append(data)
        self.pending_bytes += len(data)

    # -- output ------------------------------------------------------------------------------

    def flush(self, force: bool = False) -> bool:
        """Write the buffered lines; True when nothing is left pending.

        On failure the lines are kept and the next attempt is scheduled (``retry_at``);
        before then a flush returns False without trying, unless ``force``.
        """
        lines = self._lines
        due = force or self._backoff.due()
        if not lines:
            if (self._held or self._dead.records) and due:
                self._redrive()
            return not self._held
        if not due:
            self._divert_if_large()
            return False
        try:
            self._write_lines(lines)
        except OSError as exc:
            self.failed("trace write", exc)
            if self._backoff.failed():
                self.retries += 1
                self._divert_if_large()
            else:
                self._backoff.reset()
                self._dead_letter()
            return False
        self._backoff.reset()
        self._dead_streak = 0
        if self._held or self._dead.records:
            self._redrive()
        if self.mode != "batched" and not self._held:
            self._set_mode("batched", "writes work again")
        return not self._held

    def _write_lines(self, lines: list[bytes]) -> None:
        """Write ``lines`` to the trace file (removing each from the list once written)."""
        if self.mode == "immediate":
            while lines:
                self._trace.append([lines[0]])
                self._done(lines[:1])
                del lines[0]
            return
        self._trace.append(lines)
        self._done(lines)
        lines.clear()

    def _done(self, lines: list[bytes]) -> None:
        n = sum(len(x) for x in lines)
        self.pending_bytes -= n
        self.records_written += len(lines)
        self.bytes_written += n
        self.batches += 1

    def _dead_letter(self) -> None:
        """The buffered lines go to the dead-letter file, or are held in memory."""
        lines = self._lines
        self._dead_streak += 1
        try:
            self._dead.append(lines)
        except OSError as exc:
            self.failed("dead-letter write", exc)
            self._set_mode("memory", "neither the trace nor the dead-letter file can be written")
            self._hold()
            return
        self.dead_lettered_batches += 1
        self.dead_lettered_records += len(lines)
        self.pending_bytes -= sum(len(x) for x in lines)
        lines.clear()
        if self._dead_streak >= DEGRADE_AFTER and self.mode == "batched":
            self._set_mode("immediate", "batched writes keep failing; writing record by record")

    def _divert_if_large(self) -> None:
        """Backing off with more than half the budget waiting: waiting on with it would make
        the budget throttle the callers or spill their bodies to the disk that is failing. The
        lines go to the dead-letter file now (in memory mode, where that failed already, they
        join the held lines without another attempt); the backoff itself goes on."""
        if self.pending_bytes <= self.memory_limit // 2:
            return
        if self.mode == "memory":
            self._hold()
        else:
            self._dead_letter()

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
        if not drop:
            return
        del held[:drop]
        self.records_lost += drop
        losses = self._losses
        losses.unlogged += drop
        now = self._clock()
        if now >= losses.log_at:
            losses.log_at = now + LOSS_LOG_NS
            log.critical(
                "zltrace: %d records dropped: the disk is unwritable (%s) and the memory "
                "budget (%d bytes) is full (%d lost so far)",
                losses.unlogged,
                self.last_error,
                self.memory_limit,
                self.records_lost,
            )
            losses.unlogged = 0

    def _redrive(self) -> None:
        """Copy what the dead-letter file and memory hold into the trace, now that it works."""
        try:
            if self._held:
                self._trace.append(self._held)
                self._done(self._held)
                self.redriven_records += len(self._held)
                self._held.clear()
            if self._dead.records:
                self._dead.copy_to(self._trace, self._copied)
                self.redriven_records += self._dead.records
                self.records_written += self._dead.records
                self._dead.records = 0
        except OSError as exc:
            self.failed("re-drive", exc)
            self._backoff.pause()
            return
        if self.mode != "batched":
            self._set_mode("batched", "writes work again; held records re-driven")

    def _copied(self, n: int) -> None:
        self.bytes_written += n

    # -- reporting ---------------------------------------------------------------------------

    def failed(self, what: str, exc: OSError) -> None:
        """Count a failed write (logged the first time); the records are kept and retried."""
        self.write_errors += 1
        self.last_error = f"{what}: {exc}"
        if self.write_errors == 1:
            log.error(
                "zltrace: %s failed for %s: %s (records are kept and retried)", what, self.path, exc
            )

    def _recreated(self, path: str) -> None:
        self.files_recreated += 1
        self._note_mode("recreated", f"{path} was removed; writing a new file there")

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

    # -- the end -----------------------------------------------------------------------------

    def abandon(self) -> None:
        """Close the descriptors without writing (a forked child leaving the parent's files)."""
        self._trace.drop()
        self._side.drop()
        self._lines = []
        self._held = []
        self.pending_bytes = 0
        self._dead.records = 0

    def close(self) -> None:
        """Write everything (trace, else dead-letter file), fsync and close both files.

        Lines that neither file takes are lost: counted in ``records_lost`` and logged.
        """
        if not self.flush(force=True) and self._lines:
            self._dead_letter()
        losses = self._losses
        if losses.unlogged:
            log.critical(
                "zltrace: %d more records were dropped while the disk was unwritable "
                "(%d lost in all)",
                losses.unlogged,
                self.records_lost,
            )
            losses.unlogged = 0
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
        self._trace.close()
        self._side.close()
