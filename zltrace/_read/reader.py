"""The read side: trace files back to :class:`Exchange` objects.

Streams: one line at a time, side-file bodies read with ``pread`` when their line is, so
memory stays flat in the size of the trace. Nothing in a file makes it raise: a line that
cannot be used (torn by a crash, not JSON, a future format version, a field the format does
not allow, see ``line``) is skipped with a :class:`ZltraceWarning` naming the file and
line; the rest is read.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from typing import Union

from .._format import (
    DEAD_LETTER_SUFFIX,
    FORMAT_VERSION,
    RAW_DEAD_LETTER_SUFFIX,
    RAW_SUFFIX,
    TRACE_SUFFIX,
    dead_letter_path,
    stem_of,
)
from .._format_raw import MAX_PAYLOAD
from ..exceptions import InvalidArgumentError, ZltraceWarning
from .decode import DEFAULT_DECODE_LIMITS, DecodeLimits
from .exchange import ErrorInfo, Exchange, Request, Response, SkippedLine, Timing
from .line import build
from .rawlog import read_raw
from .rawscan import is_raw_log
from .sidefile import SideFiles

__all__ = [
    "ErrorInfo",
    "Exchange",
    "Request",
    "Response",
    "SkippedLine",
    "Timing",
    "read",
    "trace_files",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Lines longer than this are skipped unparsed. A line holds an inline body only up to
#: ``INLINE_MAX`` bytes, unless the side file failed while the trace was written (then the
#: whole body is inline): the limit leaves room for that and bounds what one line can cost.
MAX_LINE_BYTES = 1 << 30
_SKIP_CHUNK = 1 << 20


def trace_files(path: PathLike) -> list[str]:
    """The trace files at ``path``: a directory's ``*.jsonl`` and ``*.zlog`` (raw event
    logs), its sub-directories' too (a directory of trace directories), by path; or the file
    itself -- after its dead-letter file (``<stem>.deadletter.jsonl`` or ``.deadletter.zlog``,
    written while the trace could not be) when there is one."""
    p = os.fspath(path)
    if os.path.isdir(p):
        # A dead-letter file sorts before its trace (".d" < ".j"), as it is read below.
        found: list[str] = []
        for top, dirs, names in os.walk(p):
            dirs.sort()
            found.extend(
                os.path.join(top, n)
                for n in sorted(names)
                if n.endswith((TRACE_SUFFIX, RAW_SUFFIX)) and os.path.isfile(os.path.join(top, n))
            )
        return found
    if (p.endswith(TRACE_SUFFIX) and not p.endswith(DEAD_LETTER_SUFFIX)) or (
        p.endswith(RAW_SUFFIX) and not p.endswith(RAW_DEAD_LETTER_SUFFIX)
    ):
        dead = dead_letter_path(p)
        if os.path.exists(dead):
            # The trace itself may never have been created (its writes failed from the start).
            return [dead, p] if os.path.exists(p) else [dead]
    return [p]


def read(
    path: PathLike,
    *,
    skipped: list[SkippedLine] | None = None,
    max_decoded_bytes: int = DEFAULT_DECODE_LIMITS.max_bytes,
    max_decode_ratio: int = DEFAULT_DECODE_LIMITS.max_ratio,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Exchange]:
    """Iterate over the exchanges in a trace file, or in every trace file of a directory
    and its sub-directories.

    Nothing in a file makes it raise. Each unusable line (torn by a crash, not JSON, a
    future format version, a field of the wrong type or out of range, a body its side file
    does not hold, longer than ``max_line_bytes``) is skipped with a :class:`ZltraceWarning`
    naming file and line, and appended to ``skipped`` when it is given, so callers can count
    them. What is yielded is well typed: every field has the type its class states.

    :attr:`Response.body` undoes the Content-Encoding up to ``max_decoded_bytes``, and up to
    ``max_decode_ratio`` times the encoded size (a body decoding to at most 1 MiB is never
    refused for its ratio); a body that would decode to more is left as received, and
    :attr:`Response.decode_note` says why.

    A trace file is read with its dead-letter file, and an exchange found in both (a process
    that died between copying the dead-letter file back into the trace and removing it) is
    yielded once: every exchange once, whatever the writer was doing when it stopped.
    """
    limits = DecodeLimits(max_decoded_bytes, max_decode_ratio)  # checks them, now
    if type(max_line_bytes) is not int or max_line_bytes < 1:
        raise InvalidArgumentError(
            f"max_line_bytes must be an integer >= 1, got {max_line_bytes!r}"
        )
    return _read(path, skipped, limits, max_line_bytes)


def _read(
    path: PathLike, skipped: list[SkippedLine] | None, limits: DecodeLimits, max_line: int
) -> Iterator[Exchange]:
    dead_ids: dict[str, set[str]] = {}  # trace stem -> ids already read from its dead letters
    max_payload = min(max_line, MAX_PAYLOAD)
    for file in trace_files(path):
        if file.endswith(RAW_DEAD_LETTER_SUFFIX):
            if os.path.exists(stem_of(file) + RAW_SUFFIX):
                continue  # read with its trace, merged record by record
            yield from read_raw([file], skipped, limits, max_payload)
            continue
        if file.endswith(RAW_SUFFIX) or (not file.endswith(TRACE_SUFFIX) and is_raw_log(file)):
            dead = stem_of(file) + RAW_DEAD_LETTER_SUFFIX
            yield from read_raw([dead, file], skipped, limits, max_payload)
            continue
        if file.endswith(DEAD_LETTER_SUFFIX):
            ids = dead_ids.setdefault(stem_of(file), set())
            try:
                for ex in _read_file(file, skipped, limits, max_line):
                    ids.add(ex.id)
                    yield ex
            except FileNotFoundError:
                pass  # re-driven and removed since it was listed: its lines are in the trace
            continue
        seen = dead_ids.get(stem_of(file))
        for ex in _read_file(file, skipped, limits, max_line):
            if not seen or ex.id not in seen:
                yield ex


def _read_file(
    file: str, skipped: list[SkippedLine] | None, limits: DecodeLimits, max_line: int
) -> Iterator[Exchange]:
    def _warn(lineno: int, what: str) -> None:
        if skipped is not None:
            skipped.append(SkippedLine(file, lineno, what))
        warnings.warn(f"{file}:{lineno}: {what}; line skipped", ZltraceWarning, stacklevel=4)

    side = SideFiles(os.path.dirname(os.path.abspath(file)))
    try:
        with open(file, "rb") as f:
            lineno = 0
            while line := f.readline(max_line + 1):
                lineno += 1
                if len(line) > max_line:
                    _warn(lineno, f"line longer than {max_line} bytes")
                    while line and not line.endswith(b"\n"):  # skip to the next line
                        line = f.readline(_SKIP_CHUNK)
                    continue
                if not line.endswith(b"\n"):
                    _warn(lineno, "torn last line (the writer was interrupted)")
                    break
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError, MemoryError) as exc:
                    _warn(lineno, f"not JSON ({type(exc).__name__}: {exc})")
                    continue
                version = rec.get("v") if isinstance(rec, dict) else None
                if type(version) is not int or version != FORMAT_VERSION:
                    _warn(lineno, f"unknown format version {version!r}")
                    continue
                try:
                    yield build(rec, side, (file, lineno), limits)
                except (ValueError, OSError, MemoryError, RecursionError) as exc:
                    # ValueError includes TraceLineError; OSError is a side file that is gone;
                    # the other two are the last guard for a line too large or too deep.
                    _warn(lineno, f"unusable record ({type(exc).__name__}: {exc})")
    finally:
        side.close()
