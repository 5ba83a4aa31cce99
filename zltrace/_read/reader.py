"""The read side: trace files back to :class:`Exchange` objects.

Streams: one line at a time, side-file bodies read with ``pread`` when their line is, so
memory stays flat in the size of the trace. A line that cannot be used (torn by a crash,
not JSON, a future format version) is skipped with a :class:`ZltraceWarning` naming the file
and line; the rest is read.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import warnings
from array import array
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Union

from .._format import (
    DEAD_LETTER_SUFFIX,
    FORMAT_VERSION,
    TRACE_SUFFIX,
    dead_letter_path,
    stem_of,
)
from ..exceptions import ZltraceWarning
from .records import ErrorInfo, Exchange, Request, Response, SkippedLine, Timing

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


def trace_files(path: PathLike) -> list[str]:
    """The trace files at ``path``: a directory's ``*.jsonl`` by name, or the file itself --
    after its dead-letter file (``<stem>.deadletter.jsonl``, written while the trace could not
    be) when there is one."""
    p = os.fspath(path)
    if os.path.isdir(p):
        # A dead-letter file sorts before its trace (".d" < ".j"), as it is read below.
        return sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(TRACE_SUFFIX))
    if p.endswith(TRACE_SUFFIX) and not p.endswith(DEAD_LETTER_SUFFIX):
        dead = dead_letter_path(p)
        if os.path.exists(dead):
            # The trace itself may never have been created (its writes failed from the start).
            return [dead, p] if os.path.exists(p) else [dead]
    return [p]


def read(path: PathLike, *, skipped: list[SkippedLine] | None = None) -> Iterator[Exchange]:
    """Iterate over the exchanges in a trace file, or in every trace file of a directory.

    Each unusable line (torn by a crash, not JSON, a future format version, a side file that
    is missing) is skipped with a :class:`ZltraceWarning` naming file and line, and appended
    to ``skipped`` when it is given, so callers can count them.

    A trace file is read with its dead-letter file, and an exchange found in both (a process
    that died between copying the dead-letter file back into the trace and removing it) is
    yielded once: every exchange once, whatever the writer was doing when it stopped.
    """
    dead_ids: dict[str, set[str]] = {}  # trace stem -> ids already read from its dead letters
    for file in trace_files(path):
        if file.endswith(DEAD_LETTER_SUFFIX):
            ids = dead_ids.setdefault(stem_of(file), set())
            try:
                for ex in _read_file(file, skipped):
                    ids.add(ex.id)
                    yield ex
            except FileNotFoundError:
                pass  # re-driven and removed since it was listed: its lines are in the trace
            continue
        seen = dead_ids.get(stem_of(file))
        for ex in _read_file(file, skipped):
            if not seen or ex.id not in seen:
                yield ex


class _SideFiles:
    def __init__(self, directory: str) -> None:
        self._dir = directory
        self._fds: dict[str, int] = {}

    def get(self, name: str, offset: int, size: int) -> bytes:
        if os.sep in name or (os.altsep and os.altsep in name) or name.startswith("."):
            raise OSError(f"side file name {name!r} is not a plain file name")
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(os.path.join(self._dir, name), os.O_RDONLY)
        chunks = []
        while size:
            chunk = os.pread(fd, size, offset)
            if not chunk:
                raise OSError(f"side file {name!r} ends before offset {offset} + {size}")
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _read_file(file: str, skipped: list[SkippedLine] | None) -> Iterator[Exchange]:
    def _warn(file: str, lineno: int, what: str) -> None:
        if skipped is not None:
            skipped.append(SkippedLine(file, lineno, what))
        warnings.warn(f"{file}:{lineno}: {what}; line skipped", ZltraceWarning, stacklevel=4)

    side = _SideFiles(os.path.dirname(os.path.abspath(file)))
    try:
        with open(file, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    _warn(file, lineno, "torn last line (the writer was interrupted)")
                    break
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    _warn(file, lineno, f"not JSON ({exc})")
                    continue
                if not isinstance(rec, dict) or rec.get("v") != FORMAT_VERSION:
                    version = rec.get("v") if isinstance(rec, dict) else None
                    _warn(file, lineno, f"unknown format version {version!r}")
                    continue
                try:
                    yield _exchange(rec, side, (file, lineno))
                except (KeyError, TypeError, ValueError, OSError) as exc:
                    _warn(file, lineno, f"unusable record ({type(exc).__name__}: {exc})")
    finally:
        side.close()


def _body(spec: dict[str, Any] | None, side: _SideFiles) -> bytes | None:
    if spec is None:
        return None
    data: bytes
    if "text" in spec:
        data = spec["text"].encode("utf-8")
    elif "base64" in spec:
        data = base64.b64decode(spec["base64"])
    elif "parts" in spec:
        # Spilled while in flight: side-file extents [offset, size], or base64 text for a
        # part that had to stay inline.
        data = b"".join(
            base64.b64decode(p) if isinstance(p, str) else side.get(spec["file"], p[0], p[1])
            for p in spec["parts"]
        )
    else:
        data = side.get(spec["file"], spec["offset"], spec["size"])
    if len(data) != spec["size"]:
        raise ValueError(f"body is {len(data)} bytes, the record says {spec['size']}")
    return data


def _reads(spec: Any, side: _SideFiles) -> list[tuple[int, int]]:
    if isinstance(spec, dict):
        arr = array("q")
        arr.frombytes(side.get(spec["file"], spec["offset"], spec["count"] * 16))
        if sys.byteorder != "little":  # pragma: no cover
            arr.byteswap()
        flat: list[int] = arr.tolist()
    else:
        flat = spec
    return list(zip(flat[0::2], flat[1::2]))


def _exchange(rec: dict[str, Any], side: _SideFiles, source: tuple[str, int]) -> Exchange:
    rq = rec["request"]
    request = Request(
        method=rq["method"],
        url=rq["url"],
        http_version=rq["http_version"],
        headers=[(n, v) for n, v in rq["headers"]],
        body=_body(rq["body"], side),
    )
    rs = rec["response"]
    response = None
    if rs is not None:
        response = Response(
            status=rs["status"],
            reason=rs["reason"],
            http_version=rs["http_version"],
            headers=[(n, v) for n, v in rs["headers"]],
            raw_body=_body(rs["body"], side) or b"",
            framing=rs["framing"],
            reads=_reads(rs["reads"], side),
        )
    err = rec["error"]
    t = rec["timing"]
    started = datetime.strptime(rec["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc
    )
    return Exchange(
        id=rec["id"],
        logical_id=rec["logical_id"],
        started_at=started,
        request=request,
        response=response,
        outcome=rec["outcome"],
        error=None if err is None else ErrorInfo(err["type"], err["message"]),
        timing=Timing(t["request_sent"], t["headers_received"], t["first_byte"], t["end"]),
        source=source,
    )
