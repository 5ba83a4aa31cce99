"""Reading a raw event log: whole, or incrementally as it grows.

A trace file is read together with its dead-letter file (records the trace could not take
when they were made, copied back later): both are scanned, their records merged by
``seq`` -- the order they were made in -- and a record found in both is used once. So an
exchange whose events were split between the two files by a write failure reads back whole.

:class:`RawLog` is the incremental interface: :meth:`RawLog.poll` reads what the files
hold now and returns the exchanges that ended so far (a live trace can be followed by
polling again); :meth:`RawLog.finish` reads to the end and returns the rest, those still
open as ``incomplete``. Memory: the open exchanges' bookkeeping and one record at a time;
bodies stay in the file (``lazybody``).
"""

from __future__ import annotations

import heapq
import os
import warnings
from collections.abc import Iterator
from typing import IO, Callable

from .._format_raw import MAX_PAYLOAD
from ..exceptions import ZltraceWarning
from .decode import DEFAULT_DECODE_LIMITS, DecodeLimits
from .exchange import Exchange, SkippedLine
from .lazybody import SharedFd
from .rawassemble import RawAssembler
from .rawscan import Record, RecordScanner

__all__ = ["RawLog"]


class RawLog:
    """One raw trace file (and its dead-letter file, if any), read from where it stopped.

    ``paths``: the files of one trace, the trace file last. Damage is warned about
    (:class:`ZltraceWarning`, naming file and offset) and appended to ``skipped``.
    """

    def __init__(
        self,
        paths: list[str],
        *,
        skipped: list[SkippedLine] | None = None,
        limits: DecodeLimits = DEFAULT_DECODE_LIMITS,
        max_payload: int = MAX_PAYLOAD,
    ) -> None:
        self.paths = list(paths)
        self._skipped = skipped
        self._scanners = [RecordScanner(p, self._warner(p), max_payload) for p in self.paths]
        #: One descriptor per file, shared by the scanner and the bodies read from it.
        self._fds: list[SharedFd | None] = [None] * len(self.paths)
        self._files: list[IO[bytes] | None] = [None] * len(self.paths)
        self._asm = RawAssembler(self.paths, self._fds, limits, self._warner(self.paths[-1]))
        self._last_seq = 0
        self._last_file = -1
        self._finished = False

    def _warner(self, path: str) -> Callable[[int, str], None]:
        # No reference to self: the scanners hold this, and a cycle would keep the files
        # open until the cyclic garbage collector ran (an unlinked file stays on its disk).
        skipped = self._skipped

        def warn(offset: int, what: str) -> None:
            if skipped is not None:
                skipped.append(SkippedLine(path, offset, what))
            warnings.warn(f"{path}@{offset}: {what}", ZltraceWarning, stacklevel=5)

        return warn

    @property
    def open_count(self) -> int:
        """Exchanges started but not ended in what was read so far."""
        return self._asm.open_count

    def poll(self) -> list[Exchange]:
        """Read what the files hold now; the exchanges that ended."""
        return list(self._read(final=False))

    def finish(self) -> list[Exchange]:
        """Read to the end; the exchanges that ended, then those still open (incomplete)."""
        return list(self.iter_finish())

    def iter_finish(self) -> Iterator[Exchange]:
        """:meth:`finish` as an iterator: each exchange as soon as it is assembled."""
        if self._finished:
            return
        yield from self._read(final=True)
        out: list[Exchange] = []
        self._asm.finish(None, out)
        self._finished = True
        self.close()
        yield from out

    def close(self) -> None:
        """Let go of the files (bodies of exchanges already read stay readable)."""
        for i, f in enumerate(self._files):
            if f is not None:
                f.close()
                self._files[i] = None
            self._fds[i] = None

    def _open(self, i: int) -> IO[bytes] | None:
        f = self._files[i]
        if f is None:
            shared = self._fds[i]
            if shared is None:
                try:
                    shared = self._fds[i] = SharedFd(self.paths[i])
                except OSError:
                    # A dead-letter file re-driven and removed: its records are in the trace.
                    return None
            f = self._files[i] = open(shared.fd, "rb", closefd=False)  # noqa: SIM115
        return f

    def _read(self, final: bool) -> Iterator[Exchange]:
        out: list[Exchange] = []
        streams: list[Iterator[tuple[int, int, Record]]] = []
        for i, scanner in enumerate(self._scanners):
            f = self._open(i)
            if f is not None:
                streams.append(_tagged(scanner.records(f, final), i))
        asm = self._asm
        for seq, i, rec in heapq.merge(*streams):
            if asm.info is None and self._scanners[i].info is not None:
                asm.info = self._scanners[i].info
            if seq <= self._last_seq and i != self._last_file:
                continue  # in the dead-letter file and in the trace: once is enough
            # Within one file every record counts, in file order, whatever its number says
            # (a damaged or hostile number must not hide the records after it).
            self._last_seq, self._last_file = max(seq, self._last_seq), i
            asm.apply(rec, i, out)
            if out:
                yield from out
                out.clear()
        for s in self._scanners:
            if asm.info is None and s.info is not None:
                asm.info = s.info


def _tagged(records: Iterator[Record], i: int) -> Iterator[tuple[int, int, Record]]:
    for rec in records:
        yield rec.seq, i, rec


def read_raw(
    paths: list[str], skipped: list[SkippedLine] | None, limits: DecodeLimits, max_payload: int
) -> Iterator[Exchange]:
    """Every exchange of one raw trace (its files as for :class:`RawLog`), in order of end."""
    log = RawLog(
        [p for p in paths if os.path.exists(p)] or paths[-1:],
        skipped=skipped,
        limits=limits,
        max_payload=max_payload,
    )
    try:
        yield from log.iter_finish()
    finally:
        log.close()
