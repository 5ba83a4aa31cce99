"""The write policy: batches of trace lines, and what happens when writing fails.

Lines are encoded by :mod:`.lines`, buffered, and written in batches by the caller of
:meth:`TraceWriter.flush` (the worker: at ``buffer_size`` records or after ``flush_ms``). The
files themselves (opening, re-creating, cutting back torn lines) are :mod:`.files`.

When writing fails (full disk, I/O error, a directory that vanished or turned read-only), no
record is dropped while there is anywhere to keep it:

1. The lines stay buffered and the write is tried again on two clocks (:mod:`.schedule`):
   often, to notice at once that the disk is back; and on a backoff, which decides which
   failures count (logged, counted as retries, towards the dead-letter file).
2. While writes fail, waiting lines are held in memory compressed (:mod:`.held`) as soon as
   they make a block, and charged to the budget what they cost.
3. After ``write_retries`` counted failures what waits goes to the dead-letter file
   ``<stem>.deadletter.jsonl`` beside the trace (same format, so ``zltrace.read`` of the
   directory sees it) and later batches try the normal path again. So does it as soon as it
   takes more than half of ``memory_limit`` (the backoff goes on): waiting with it would make
   the memory budget throttle the callers or spill their bodies to the disk that is failing.
4. If the dead-letter file cannot be written either ("memory" mode), the lines stay held;
   new lines join them without another dead-letter attempt until the retries run out again.
5. When the held lines are about to overflow the budget (``SPILL_AT`` of ``memory_limit``),
   they are spilled: to the dead-letter file, else to the same file name in the fallback
   directory (``Config.fallback_dir``, private to us). Only when neither takes them and the
   budget is full are the oldest dropped -- the one place where records can be lost, counted
   in ``records_lost``, logged and warned about (:mod:`.losses`).
6. After ``DEGRADE_AFTER`` batches in a row had to be dead-lettered the writer writes each
   line on its own ("immediate" mode): a failure then keeps only the lines not yet written.
   One successful batch returns it to "batched".
7. When a write to the trace succeeds again, the lines held in memory, the dead-letter file
   and the fallback file are re-driven into the trace (each file removed once copied).

Each change of mode is logged once at WARNING (later repeats at DEBUG) and counted.

A raw event log (``raw_header`` given) goes through the same policy: its records are the
units written, held, dead-lettered and re-driven, and every file starts with the header.
Its records must reach the trace in the order they were made (the reader assembles
exchanges from them), so for it the writer keeps one queue: while anything waits in a
dead-letter file, the fallback or memory, new records go behind it -- the re-drive comes
first (dead-letter file, then fallback, then memory: oldest first), and once the fallback
holds records, what would go to the dead-letter file goes there too.

The names are claimed before the first file is opened: the trace directory must be a
directory we own that others cannot write (created 0700 if missing); one that is not is
refused with one :class:`ZltraceWarning` naming it (``dir_name``, e.g. ``ZLTRACE_DIR``, and its
value), and the files go to the fallback directory instead. A stem whose trace, side or
dead-letter name is already taken (a planted file or symlink) is passed over for the next
free one (``<stem>-1``, ...), with a warning. Every file is then created ``O_EXCL`` and never
through a symlink (:mod:`.files`).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any, Callable

from .._format import (
    DEAD_LETTER_SUFFIX,
    RAW_DEAD_LETTER_SUFFIX,
    RAW_SUFFIX,
    SIDE_SUFFIX,
    TRACE_SUFFIX,
)
from ..exceptions import ZltraceWarning
from .files import DeadLetterFile, Opener, SideFile, TraceFile, claim_names
from .finished import Buffer, Finished
from .held import HeldLines, compress
from .lines import LineEncoder
from .losses import LossReport
from .schedule import Schedule
from .writecounts import RateMeter, WriteCounts

__all__ = ["Opener", "TraceWriter"]

log = logging.getLogger(__name__)

#: Consecutive dead-lettered batches after which lines are written one at a time.
DEGRADE_AFTER = 2
#: Share of ``memory_limit`` above which held lines are spilled to a file (the rest of the
#: budget is left to bodies still in flight).
SPILL_AT = 0.75
#: While writes fail, waiting lines are compressed into a held block once they reach this size.
HOLD_BLOCK = 64 * 1024
#: A spill that failed is tried again no sooner than this (nor than one first backoff delay).
SPILL_RETRY_NS = 1_000_000_000
#: ... and, while writes work, what a held line would cost is sampled this often.
SAMPLE_NS = 10_000_000_000


class TraceWriter(WriteCounts):
    """One trace file, its side file and its dead-letter files; created on first use."""

    def __init__(
        self,
        directory: str,
        stem: str,
        opener: Opener = os.open,
        *,
        retries: int = 5,
        backoff_ms: int = 100,
        memory_limit: int = 10 * 1024 * 1024,
        fallback_dir: str | None = None,
        dir_name: str = "Config.dir",
        clock: Callable[[], int] = time.perf_counter_ns,
        raw_header: bytes | None = None,
    ) -> None:
        self._raw = raw_header
        self._directory = directory
        self._stem = stem
        self._opener = opener
        self._fallback_dir = fallback_dir
        self._dir_name = dir_name
        self._claimed = False
        self._warned: set[str] = set()
        self._encoder = LineEncoder(stem + SIDE_SUFFIX, self.spill, self.failed)
        self._name(directory, stem)
        self._schedule = Schedule(retries, backoff_ms * 1_000_000, clock)
        self._meter = RateMeter(clock())
        self._losses = LossReport(clock)
        self._clock = clock
        self.memory_limit = memory_limit
        self._lines: list[bytes] = []  # encoded, not yet written
        self._lines_bytes = 0
        self._held = HeldLines()  # lines neither the trace nor the dead-letter file took
        self._cost_ratio = 1.0  # what a held line costs per encoded byte (last seen)
        self._sample_at = 0  # when to measure that ratio again while writes work
        self._dead_streak = 0  # batches dead-lettered in a row
        self._spill_at = 0  # clock time before which a failed spill is not tried again
        self.mode = "batched"
        self._modes_logged: set[str] = set()

    def _name(self, directory: str, stem: str) -> None:
        """The files of ``stem`` in ``directory`` (none opened yet)."""
        opener, fallback_dir = self._opener, self._fallback_dir
        base = os.path.join(directory, stem)
        raw = self._raw
        trace, dead = (
            (TRACE_SUFFIX, DEAD_LETTER_SUFFIX)
            if raw is None
            else (
                RAW_SUFFIX,
                RAW_DEAD_LETTER_SUFFIX,
            )
        )
        header = raw or b""
        self._trace = TraceFile(base + trace, opener, self._recreated, header)
        self._side = SideFile(base + SIDE_SUFFIX, opener)
        self._dead = DeadLetterFile(base + dead, opener, header=header)
        self._fallback = (
            None
            if fallback_dir is None or directory == fallback_dir
            else DeadLetterFile(
                os.path.join(fallback_dir, stem + dead), opener, private=True, header=header
            )
        )
        self._encoder.rename(stem + SIDE_SUFFIX)

    def _claim(self) -> None:
        """Check the directory and pick free names, before the first file is opened.

        Raises ``OSError`` when neither the trace directory nor the fallback can be used
        (tried again on the next write: a directory's state can change)."""
        if self._claimed:
            return
        directory, stem = claim_names(
            self._directory, self._stem, self._fallback_dir, self._dir_name, self._warn_once, self
        )
        self._name(directory, stem)
        self._claimed = True

    def _warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("%s", message)
        warnings.warn(message, ZltraceWarning, stacklevel=2)

    @property
    def path(self) -> str:
        return self._trace.path

    @property
    def pending(self) -> int:
        """Records not yet in the trace file or a dead-letter file."""
        return len(self._lines) + self._held.records

    @property
    def pending_bytes(self) -> int:
        """Memory the waiting lines take: encoded, or compressed while held."""
        return self._lines_bytes + self._held.cost

    @property
    def retry_at(self) -> int:
        """Clock time before which a flush does not try to write again."""
        return min(self._schedule.retry_at, self._schedule.probe_at)

    def outage_stats(self) -> dict[str, Any]:
        """How long the memory budget would hold an outage starting now, and where spills went.

        ``outage_budget_s``: seconds of records at the current rate that the budget holds,
        at what a held line costs (None while there is no traffic).
        """
        rate = self._meter.current(self._clock())
        seconds = self.memory_limit / (rate * self._cost_ratio) if rate else None
        return {
            "outage_budget_s": None if seconds is None else round(seconds, 1),
            "fallback_records": self.fallback_records,
            "write_probes": self.probes,
            "trace_dir_problem": self.dir_problem,
        }

    # -- input -------------------------------------------------------------------------------

    def spill(self, buffers: Sequence[Buffer]) -> int:
        """Store body bytes in the side file (large bodies, or bodies of exchanges still in
        flight under memory pressure); their offset. Raises ``OSError``."""
        self._claim()
        offset = self._side.append(buffers)
        self.bytes_written += self._side.end - offset
        return offset

    def side_bytes(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes of the side file back from ``offset`` (arrival times spilled
        while in flight, gathered when their exchange ends). Raises ``OSError``, also when
        the file is no longer the one we wrote or holds fewer bytes."""
        return self._side.read(offset, size)

    def add(self, f: Finished) -> None:
        """Encode one finished exchange (writing large bodies now) and buffer its line."""
        data = self._encoder.encode(f)
        self._lines.append(data)
        self._lines_bytes += len(data)
        self._meter.added += len(data)

    def add_record(self, data: bytes) -> None:
        """Buffer one encoded raw record."""
        self._lines.append(data)
        self._lines_bytes += len(data)
        self._meter.added += len(data)

    # -- output ------------------------------------------------------------------------------

    def flush(self, force: bool = False) -> bool:
        """Write the buffered lines (and re-drive what waits); True when nothing is left in
        memory. On failure the lines are kept; until the next try (``retry_at``) a flush
        returns False without trying, unless ``force``."""
        now = self._clock()
        self._meter.tick(now)
        lines = self._lines
        waiting = self._held or self._dead.records or (self._fallback and self._fallback.records)
        if not lines and not waiting:
            return True
        schedule = self._schedule
        if not schedule.may_try(force):
            self._divert()
            return not lines and not self._held
        counts = schedule.counts(force)
        if not lines:
            self._redrive(counts)
            return not self._held
        if now >= self._sample_at:
            self._sample(lines, now)
        try:
            if waiting and self._raw is not None:
                self._redrive_in_order()  # what waits is older: it goes first
                waiting = None
            self._write_lines(lines)
        except OSError as exc:
            self._write_failed(exc, counts)
            return False
        schedule.reset()
        self._dead_streak = 0
        if waiting:
            self._redrive(counts)
        if self.mode != "batched" and not self._held:
            self._set_mode("batched", "writes work again")
        return not self._held

    def _write_failed(self, exc: OSError, counts: bool) -> None:
        schedule = self._schedule
        schedule.failed()
        if not counts:
            self.probes += 1
            self._divert()
            return
        self.failed("trace write", exc)
        if schedule.backoff():
            self.retries += 1
            self._divert()
        else:
            schedule.reset()
            self._dead_letter()

    def _write_lines(self, lines: list[bytes]) -> None:
        """Write ``lines`` to the trace file (removing each from the list once written)."""
        self._claim()
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
        self._lines_bytes -= n
        self.records_written += len(lines)
        self.bytes_written += n
        self.batches += 1

    def _sample(self, lines: list[bytes], now: int) -> None:
        """Measure what these lines would cost if held (for ``outage_budget_s``)."""
        self._sample_at = now + SAMPLE_NS
        data = b"".join(lines)
        self._cost_ratio = len(compress(data)) / len(data) if data else 1.0

    # -- the places of last resort -----------------------------------------------------------

    def _dead_letter(self) -> None:
        """Everything waiting in memory goes to the dead-letter file, or stays held there."""
        self._dead_streak += 1
        if self._move_to(fallback=False, with_lines=True) is not None:
            self._set_mode("memory", "neither the trace nor the dead-letter file can be written")
            self._hold()
            return
        if self._dead_streak >= DEGRADE_AFTER and self.mode == "batched":
            self._set_mode("immediate", "batched writes keep failing; writing record by record")

    def _divert(self) -> None:
        """Lines waiting while writes fail: held (compressed) as soon as they make a block.
        Over half the budget, waiting on with them would make the budget throttle the callers
        or spill their bodies to the disk that is failing: they go to the dead-letter file now
        (unless that failed already: memory mode); the backoff itself goes on."""
        if self._lines_bytes >= HOLD_BLOCK:
            self._hold()
        if self.mode != "memory" and self.pending_bytes > self.memory_limit // 2:
            self._dead_letter()

    def _hold(self) -> None:
        """The buffered lines join those held (compressed) until a write works again."""
        if self._lines:
            self._held.add(self._lines)
            self._cost_ratio = self._held.cost / max(1, self._held.raw)
            self._lines.clear()
            self._lines_bytes = 0
        self._make_room()

    def _make_room(self) -> None:
        """Held lines about to overflow the budget: spill them to a file, or drop the oldest."""
        if self.pending_bytes <= self.memory_limit * SPILL_AT:
            return
        now = self._clock()
        if now >= self._spill_at:
            if self._spill_held():
                return
            self._spill_at = now + max(SPILL_RETRY_NS, self._schedule.first_ns)
        dropped = 0
        while self._held and self.pending_bytes > self.memory_limit:
            dropped += self._held.drop_oldest()
        if dropped:
            self.records_lost += dropped
            self._losses.dropped(
                dropped,
                f"the trace, dead-letter and fallback files cannot be written "
                f"({self.last_error}) and the memory budget ({self.memory_limit} bytes) is full",
                self.records_lost,
            )

    def _spill_held(self) -> bool:
        """Move the held lines to the dead-letter file, else the fallback; True if all went."""
        for fallback in (False, True):
            if self._held:
                self._move_to(fallback, with_lines=False)
        return not self._held

    def _move_to(self, fallback: bool, with_lines: bool) -> OSError | None:
        """Append the held lines (and the buffered ones) to the dead-letter file (or the
        fallback's), oldest first; the error if it refused some (those stay where they were).
        The dead-letter file needs the names claimed; the fallback checks its own directory.
        Raw records go to the fallback once it holds some: newer records must not be re-driven
        before its."""
        fb = self._fallback
        if self._raw is not None and fb is not None and fb.records:
            fallback = True
        try:
            self._claim()
        except OSError as exc:
            if not fallback:
                self.failed("dead-letter write", exc)
                return exc
        target = self._fallback if fallback else self._dead
        if target is None:
            return None
        before = target.records
        error = None
        try:
            self._held.drain(target.append)
            if with_lines and self._lines:
                target.append(self._lines, len(self._lines))
                self._lines.clear()
                self._lines_bytes = 0
        except OSError as exc:
            error = exc
            self.failed("fallback write" if fallback else "dead-letter write", exc)
        moved = target.records - before
        if not fallback:
            self.dead_lettered_batches += bool(moved)
            self.dead_lettered_records += moved
        elif moved:
            self.fallback_records += moved
            self._note_mode("fallback", f"records spilled to {target.path} until the trace works")
        return error

    def _redrive_in_order(self) -> None:
        """Raw records: the dead-letter file, the fallback, then memory (oldest first) into
        the trace; raises ``OSError`` where it stopped (the rest stays where it was)."""
        self._claim()
        for dead in (self._dead, self._fallback):
            if dead is not None and dead.records:
                dead.copy_to(self._trace, self._copied)
                self.redriven_records += dead.records
                self.records_written += dead.records
                dead.records = 0
        if self._held:
            self._held.drain(self._to_trace)

    def _redrive(self, counts: bool) -> None:
        """Copy what memory and the dead-letter files hold into the trace, now that it works."""
        try:
            if self._raw is not None:
                self._redrive_in_order()
            if self._held:
                self._held.drain(self._to_trace)
            for dead in (self._dead, self._fallback):
                if dead is not None and dead.records:
                    dead.copy_to(self._trace, self._copied)
                    self.redriven_records += dead.records
                    self.records_written += dead.records
                    dead.records = 0
        except OSError as exc:
            self._schedule.failed()
            if counts:
                self.failed("re-drive", exc)
                self._schedule.pause()
            else:
                self.probes += 1
            return
        self._schedule.reset()
        if self.mode != "batched":
            self._set_mode("batched", "writes work again; held records re-driven")

    def _to_trace(self, lines: Sequence[bytes], records: int) -> None:
        """Re-drive held lines (one block) into the trace."""
        self._trace.append(lines)
        self.records_written += records
        self.redriven_records += records
        self.bytes_written += sum(len(x) for x in lines)
        self.batches += 1

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
        self._lines_bytes = 0
        self._held.clear()
        self._dead.records = 0
        if self._fallback is not None:
            self._fallback.records = 0

    def close(self) -> None:
        """Write everything (trace, else a dead-letter file), fsync and close the files.

        Lines that no file takes are lost: counted in ``records_lost``, logged and warned.
        """
        if not self.flush(force=True):
            if self._lines or self._held:
                self._dead_letter()
            self._spill_held()
        self._losses.closing(self.records_lost)
        if self._held:
            n = self._held.records
            self._held.clear()
            self.records_lost += n
            self._losses.lost_at_close(n, self.path, self.last_error)
        self._trace.close()
        self._side.close()
