"""Following trace files as they grow: the exchanges finished since a stored position.

Rules:

- A :class:`Follower` polls; it never blocks on a file and holds no file open between polls.
  Each :meth:`Follower.poll` yields every exchange finished since the last one, in file
  order, each with the :class:`Position` from which reading resumes *after* it. Storing
  that position (the shipper does, once the exchange is acknowledged) and handing it back
  to a new follower resumes exactly there: restart-safe by construction.
- JSON-lines trace files are followed by byte offset: only lines ending in a newline are
  read (a line still being written is left for the next poll); an unusable line is skipped
  with a :class:`ZltraceWarning`, as :func:`read` does. This is the only module that knows
  the JSON-lines layout beyond the reader itself.
- A raw event log is followed as it grows (:mod:`.rawfollow`): each exchange once it ends,
  its dead-letter file merged in; its position is the offset to scan again from plus the
  ids already yielded past it, so a restart yields exactly the exchanges not yet yielded.
- Any other trace file :func:`read` understands is followed by count: when it has not
  changed for ``settle`` seconds it is read through :func:`read` and the exchanges past the
  stored count are yielded. Slower, but it needs nothing but the public reader.
- Files appear (new processes), are replaced (a new inode under the same name: read from
  the start) or truncated (smaller than the stored offset: read from the start), and vanish
  (forgotten). A dead-letter file is followed like a trace; an exchange later copied from it
  into its trace is yielded once (a bounded memory of the ids read from dead letters).
- Memory is bounded by one line (``max_line_bytes``) plus the positions, whatever the
  backlog: the caller pulls exchanges one at a time.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, Union

import attrs

from .._format import (
    DEAD_LETTER_SUFFIX,
    FORMAT_VERSION,
    RAW_DEAD_LETTER_SUFFIX,
    RAW_SUFFIX,
    TRACE_SUFFIX,
    dead_letter_path,
    stem_of,
)
from ..exceptions import ZltraceWarning
from .decode import DEFAULT_DECODE_LIMITS
from .exchange import Exchange
from .line import build
from .rawfollow import RawTail
from .reader import MAX_LINE_BYTES, read, trace_files
from .sidefile import SideFiles

__all__ = ["Follower", "Item", "Position"]

PathLike = Union[str, "os.PathLike[str]"]

#: Ids remembered per dead-letter stem, so an exchange copied back into its trace is
#: yielded once; past this many the oldest are forgotten (bounded memory).
DEAD_IDS_MAX = 65536


@attrs.frozen
class Position:
    """Where reading a trace file resumes: the file's identity and how far it was read.

    ``offset`` is a byte offset for a JSON-lines file and for a raw event log (there: where
    a restart scans again), a count of exchanges for any other format. ``line`` is the number
    of lines read (for messages only). ``done`` (raw event logs only): the ids of exchanges
    already yielded at or past ``offset``, as flat inclusive ranges.
    """

    dev: int
    ino: int
    offset: int
    line: int = 0
    done: tuple[int, ...] | None = None

    def as_json(self) -> list[Any]:
        """A compact JSON form (see :meth:`from_json`)."""
        out: list[Any] = [self.dev, self.ino, self.offset, self.line]
        if self.done is not None:
            out.append(list(self.done))
        return out

    @classmethod
    def from_json(cls, value: Any) -> Position:
        """The position :meth:`as_json` gave; ``ValueError`` on anything else."""
        done = None
        if isinstance(value, list) and len(value) == 5:
            value, done = value[:4], value[4]
            if (
                not isinstance(done, list)
                or len(done) % 2
                or not all(type(v) is int and v >= 0 for v in done)
            ):
                raise ValueError(f"raw ids must be pairs of non-negative integers, got {done!r}")
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(type(v) is int and v >= 0 for v in value)
        ):
            raise ValueError(f"a position must be 4 non-negative integers, got {value!r}")
        dev, ino, offset, line = value
        return cls(dev, ino, offset, line, None if done is None else tuple(done))


@attrs.frozen
class Item:
    """One finished exchange, the trace file it came from, and where to resume after it."""

    exchange: Exchange
    file: str
    position: Position


class Follower:
    """Yields the exchanges finished in the trace files at ``path`` since ``start``.

    ``start`` maps a trace file's absolute path to the position to resume from (what
    :attr:`Item.position` said); files not in it are read from their beginning.
    """

    def __init__(
        self,
        path: PathLike,
        start: Mapping[str, Position] | None = None,
        *,
        settle: float = 0.0,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = os.fspath(path)
        self._pos: dict[str, Position] = dict(start or {})
        self._settle = settle
        self._max_line = max_line_bytes
        self._dead_ids: dict[str, OrderedDict[str, None]] = {}
        self._stats: dict[str, tuple[int, int]] = {}  # other formats: (size, mtime) last read
        self._raw: dict[str, RawTail] = {}

    @property
    def positions(self) -> dict[str, Position]:
        """How far each known file has been read (by this follower, acknowledged or not)."""
        return dict(self._pos)

    def files(self) -> list[str]:
        """The trace files at the path now (absolute), in reading order."""
        if not os.path.exists(self.path):
            return []
        return [os.path.abspath(f) for f in trace_files(self.path)]

    def poll(self) -> Iterator[Item]:
        """Every exchange finished since the last poll, one at a time (lazily)."""
        files = self.files()
        for gone in set(self._pos) - set(files):
            del self._pos[gone]
        for gone in set(self._raw) - set(files):
            del self._raw[gone]
        listed = set(files)
        for file in files:
            try:
                st = os.stat(file)
            except OSError:
                continue  # removed since it was listed
            pos = self._pos.get(file)
            if pos is None or (pos.dev, pos.ino) != (st.st_dev, st.st_ino):
                pos = Position(st.st_dev, st.st_ino, 0, 0)
            if file.endswith(TRACE_SUFFIX):
                if st.st_size < pos.offset:
                    warnings.warn(
                        f"{file}: truncated below the position read ({pos.offset} bytes); "
                        "read again from its start",
                        ZltraceWarning,
                        stacklevel=2,
                    )
                    pos = Position(st.st_dev, st.st_ino, 0, 0)
                self._pos[file] = pos
                if st.st_size > pos.offset:
                    yield from self._lines(file, pos)
            elif file.endswith(RAW_SUFFIX):
                yield from self._rawlog(file, pos, st, listed)
            else:
                self._pos[file] = pos
                yield from self._other(file, pos, st)

    # -- JSON lines ------------------------------------------------------------------------

    def _lines(self, file: str, pos: Position) -> Iterator[Item]:
        dead = file.endswith(DEAD_LETTER_SUFFIX)
        stem = stem_of(file)
        side = SideFiles(os.path.dirname(file))
        try:
            try:
                f = open(file, "rb")  # noqa: SIM115 (a generator: closed by the with below)
            except OSError:
                return
            with f:
                f.seek(pos.offset)
                offset, lineno = pos.offset, pos.line
                while True:
                    line = f.readline(self._max_line + 1)
                    if not line.endswith(b"\n"):
                        if len(line) <= self._max_line:
                            return  # being written: read on a later poll
                        while line and not line.endswith(b"\n"):
                            line = f.readline(1 << 20)
                        if not line:
                            return
                        offset, lineno = f.tell(), lineno + 1
                        self._pos[file] = Position(pos.dev, pos.ino, offset, lineno)
                        self._warn(file, lineno, f"line longer than {self._max_line} bytes")
                        continue
                    offset, lineno = offset + len(line), lineno + 1
                    after = Position(pos.dev, pos.ino, offset, lineno)
                    self._pos[file] = after
                    ex = self._build(line, side, file, lineno)
                    if ex is None or self._seen(stem, ex.id, dead):
                        continue
                    yield Item(ex, file, after)
        finally:
            side.close()

    def _build(self, line: bytes, side: SideFiles, file: str, lineno: int) -> Exchange | None:
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError, MemoryError) as exc:
            self._warn(file, lineno, f"not JSON ({type(exc).__name__}: {exc})")
            return None
        version = rec.get("v") if isinstance(rec, dict) else None
        if type(version) is not int or version != FORMAT_VERSION:
            self._warn(file, lineno, f"unknown format version {version!r}")
            return None
        try:
            return build(rec, side, (file, lineno), DEFAULT_DECODE_LIMITS)
        except (ValueError, OSError, MemoryError, RecursionError) as exc:
            self._warn(file, lineno, f"unusable record ({type(exc).__name__}: {exc})")
            return None

    def _seen(self, stem: str, ex_id: str, dead: bool) -> bool:
        ids = self._dead_ids.get(stem)
        if dead:
            if ids is None:
                ids = self._dead_ids[stem] = OrderedDict()
            ids[ex_id] = None
            if len(ids) > DEAD_IDS_MAX:
                ids.popitem(last=False)
            return False
        return ids is not None and ex_id in ids

    @staticmethod
    def _warn(file: str, lineno: int, what: str) -> None:
        warnings.warn(f"{file}:{lineno}: {what}; line skipped", ZltraceWarning, stacklevel=4)

    # -- raw event logs --------------------------------------------------------------------

    def _rawlog(
        self, file: str, pos: Position, st: os.stat_result, listed: set[str]
    ) -> Iterator[Item]:
        dead = file.endswith(RAW_DEAD_LETTER_SUFFIX)
        stem = stem_of(file)
        if dead and stem + RAW_SUFFIX in listed:
            return  # read with its trace
        tail = self._raw.get(file)
        if tail is not None and (tail.ident != (st.st_dev, st.st_ino) or st.st_size < tail.read_to):
            if st.st_size < tail.read_to:
                warnings.warn(
                    f"{file}: truncated below the position read ({tail.read_to} bytes); "
                    "read again from its start",
                    ZltraceWarning,
                    stacklevel=3,
                )
            tail = None
            pos = Position(st.st_dev, st.st_ino, 0, 0)
        if tail is None:
            if pos.done is None:  # not a raw position (or none): from the start
                pos = Position(st.st_dev, st.st_ino, 0, 0, ())
            paths = [file] if dead else [dead_letter_path(file), file]
            tail = RawTail(paths, pos.offset, pos.done or (), ident=(st.st_dev, st.st_ino))
            self._raw[file] = tail
        if pos.done is None:
            pos = attrs.evolve(pos, done=())
        self._pos[file] = pos
        finished = False
        try:
            for ex, offset, done in tail.poll():
                if self._seen(stem, ex.id, dead):
                    continue
                after = Position(st.st_dev, st.st_ino, offset, 0, done)
                self._pos[file] = after
                yield Item(ex, file, after)
            finished = True
        finally:
            if not finished:
                # Left mid-way (the caller stopped pulling): the tail has read past what was
                # yielded; the next poll starts a new one from the last position yielded.
                self._raw.pop(file, None)
        offset, done = tail.position(set())
        self._pos[file] = Position(st.st_dev, st.st_ino, offset, 0, done)

    # -- any other format ------------------------------------------------------------------

    def _other(self, file: str, pos: Position, st: os.stat_result) -> Iterator[Item]:
        if self._settle and time.time() - st.st_mtime < self._settle:
            return  # still being written: read once it has settled
        seen = (st.st_size, st.st_mtime_ns)
        if self._stats.get(file) == seen:
            return
        self._stats[file] = seen
        count = 0
        for ex in read(file):
            count += 1
            if count <= pos.offset:
                continue
            after = Position(pos.dev, pos.ino, count, count)
            self._pos[file] = after
            yield Item(ex, file, after)
