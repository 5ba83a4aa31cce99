"""Raw log records back into exchanges: the assembly the JSONL writer does on its worker.

Rules (the same as ``_pipeline/assembler.py``, which the JSONL trace is made by; the parts
both share live in ``_assembly``):
- Records are applied in ``seq`` order; each exchange is yielded once, when it ends: its
  body complete by its framing (Content-Length reached, the last chunk and its trailers
  read, end of stream for a close-delimited body); end of stream before that (``error``);
  a close before that (``error`` after an exception, ``complete`` by ``end_marker`` when
  the body so far ends with its stream's own end marker on a chunk boundary, else
  ``abandoned``); an error before any response (``error``); a new request on the same
  connection (as a close); the tracer's STOP, or the end of the log with ``finish()``
  (``incomplete``: the partial body as far as it was written).
- Bodies are never held: request and response bodies are extents of the file (chunked
  response bodies de-framed into extents as their records pass), read when asked for.
- A record that cannot be used (a payload that does not parse, a value out of range) is
  skipped through ``warn``; an exchange whose values are out of range is not yielded.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from .._assembly.dechunk import ExtentDechunker
from .._assembly.endmark import MAX_FRAMES, TAIL, ends_with_marker
from .._assembly.urls import url_of
from .._format_raw import (
    CLOSE,
    DATA,
    EOF,
    ERROR,
    HEAD,
    HEAD_CHUNKED,
    HEAD_FIXED,
    REQHEAD,
    REQHEAD_COMPLETE,
    SEND,
    START,
    START_FIXED,
    STOP,
    unpack_strs,
)
from .decode import DecodeLimits
from .exchange import ErrorInfo, Exchange, Request, Response, Timing
from .lazybody import FILE_SHIFT, LazyBody, SharedFd
from .rawscan import FileInfo, Record

__all__ = ["RawAssembler"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MAX_HEADERS = 100_000


class _Open:
    __slots__ = (
        "dechunk",
        "error",
        "ext",
        "framing",
        "head",
        "host",
        "last_t",
        "length",
        "logical",
        "method",
        "nbody",
        "offset",
        "port",
        "reads",
        "req",
        "req_ext",
        "scheme",
        "sent_t",
        "t0",
        "target",
    )

    def __init__(
        self,
        logical: int,
        t0: int,
        scheme: str,
        host: str,
        port: int | None,
        method: str,
        target: str,
        offset: int,
    ) -> None:
        self.logical = logical
        self.t0 = self.last_t = t0
        self.scheme, self.host, self.port = scheme, host, port
        self.method, self.target = method, target
        self.offset = offset  # of the START record: where the exchange is in the file
        self.req: tuple[str, str, str, list[tuple[str, str]], bool, bool] | None = None
        self.req_ext: list[int] = []
        self.sent_t: int | None = None
        self.head: tuple[int, int, str, int, list[tuple[str, str]]] | None = None
        self.framing = "none"
        self.length: int | None = None
        self.dechunk: ExtentDechunker | None = None
        self.ext: list[int] = []
        self.reads: list[int] = []
        self.nbody = 0
        self.error: tuple[str, str] | None = None


Warn = Callable[[int, str], None]


class RawAssembler:
    """Per-exchange state of one raw log; :meth:`apply` returns the exchanges a record ended."""

    def __init__(
        self, paths: list[str], files: list[SharedFd | None], limits: DecodeLimits, warn: Warn
    ) -> None:
        self._paths = paths
        #: Where bodies are read from (``paths``' descriptors, None for a file not there).
        self._files = files
        self._limits = limits
        self._warn = warn
        self._open: dict[int, _Open] = {}
        self.info: FileInfo | None = None

    @property
    def open_count(self) -> int:
        return len(self._open)

    def apply(self, rec: Record, file_index: int, out: list[Exchange]) -> None:
        """Apply one record (found in ``paths[file_index]``); append what it ended to ``out``."""
        try:
            self._apply(rec, file_index << FILE_SHIFT, out)
        except (ValueError, UnicodeDecodeError, OverflowError, IndexError) as exc:
            self._warn(rec.offset, f"unusable record ({type(exc).__name__}: {exc}); skipped")

    def finish(self, t: int | None, out: list[Exchange]) -> None:
        """End every open exchange as ``incomplete`` (at ``t``, else at its last event)."""
        for ex_id, ex in list(self._open.items()):
            self._end(ex_id, ex, "incomplete", ex.last_t if t is None else t, out)

    def _apply(self, rec: Record, base: int, out: list[Exchange]) -> None:
        kind, ex_id, t = rec.kind, rec.ex, rec.t
        ex = self._open.get(ex_id)
        if kind == DATA:
            if ex is not None:
                self._data(ex_id, ex, rec, base, out)
        elif kind == SEND:
            if ex is not None:
                if rec.payload:
                    _keep(ex.req_ext, base + rec.offset, len(rec.payload))
                ex.sent_t = ex.last_t = t
        elif kind == START:
            self._start(rec, out)
        elif kind == REQHEAD:
            if ex is not None:
                ex.req = _request_head(rec.payload, bool(rec.flags & REQHEAD_COMPLETE))
                ex.sent_t = ex.last_t = t
        elif kind == HEAD:
            if ex is not None:
                self._head(ex_id, ex, rec, out)
        elif kind == EOF:
            if ex is not None:
                self._eof(ex_id, ex, t, out)
        elif kind == CLOSE:
            if ex is not None:
                self._stopped(ex_id, ex, t, out)
        elif kind == ERROR:
            if ex is not None:
                name, message = unpack_strs(rec.payload, 0, 2)
                if ex.error is None:
                    ex.error = (name, message)
                ex.last_t = t
                if ex.head is None:
                    self._end(ex_id, ex, "error", t, out)
        elif kind == STOP:
            self.finish(t, out)
        # other kinds: not ours to know (a newer writer); skipped by length already

    def _start(self, rec: Record, out: list[Exchange]) -> None:
        p = rec.payload
        prev, logical, port = START_FIXED.unpack_from(p, 0)
        scheme, host, method, target = unpack_strs(p, START_FIXED.size, 4)
        before = self._open.get(prev) if prev else None
        if before is not None:
            self._stopped(prev, before, rec.t, out)
        old = self._open.get(rec.ex)
        if old is not None:  # the same number again: a damaged or merged log; end the first
            self._end(rec.ex, old, "incomplete", old.last_t, out)
        self._open[rec.ex] = _Open(
            logical, rec.t, scheme, host, None if port < 0 else port, method, target, rec.offset
        )

    def _head(self, ex_id: int, ex: _Open, rec: Record, out: list[Exchange]) -> None:
        p = rec.payload
        status, version, flags, length = HEAD_FIXED.unpack_from(p, 0)
        strs = unpack_strs(p, HEAD_FIXED.size, 2 + 2 * _MAX_HEADERS)
        if len(strs) < 2 or len(strs) % 2:
            raise ValueError(f"{len(strs)} strings: not method, reason and header pairs")
        method, reason, flat = strs[0], strs[1], strs[2:]
        headers = list(zip(flat[0::2], flat[1::2]))
        t = rec.t
        ex.head = (t, status, reason, version, headers)
        ex.last_t = t
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._end(ex_id, ex, "complete", t, out)
        elif flags & HEAD_CHUNKED:
            ex.framing = "chunked"
            ex.dechunk = ExtentDechunker()
        elif length < 0:
            ex.framing = "close"
        else:
            ex.framing = "length"
            ex.length = length
            if length == 0:
                self._end(ex_id, ex, "complete", t, out)

    def _data(self, ex_id: int, ex: _Open, rec: Record, base: int, out: list[Exchange]) -> None:
        t = rec.t
        ex.last_t = t
        if ex.head is None:
            return
        dechunk = ex.dechunk
        if dechunk is not None:
            got = dechunk.feed(rec.payload, base + rec.offset)
            if got:
                ex.nbody += got
                ex.reads += (ex.nbody, t - ex.t0)
            if dechunk.done or dechunk.error:
                if dechunk.error:
                    ex.error = ("zltrace.FramingError", dechunk.error)
                    self._end(ex_id, ex, "error", t, out)
                else:
                    self._end(ex_id, ex, "complete", t, out)
            return
        n = len(rec.payload)
        _keep(ex.ext, base + rec.offset, n)
        ex.nbody += n
        ex.reads += (ex.nbody, t - ex.t0)
        if ex.length is not None and ex.nbody >= ex.length:
            self._end(ex_id, ex, "complete", t, out)

    def _eof(self, ex_id: int, ex: _Open, t: int, out: list[Exchange]) -> None:
        if ex.head is None:
            return
        if ex.framing == "close":
            self._end(ex_id, ex, "complete", t, out)
            return
        if ex.error is None:
            if ex.framing == "length":
                msg = f"connection closed after {ex.nbody} of {ex.length} body bytes"
            else:
                msg = f"connection closed before the last chunk ({ex.nbody} body bytes read)"
            ex.error = ("zltrace.IncompleteBody", msg)
        self._end(ex_id, ex, "error", t, out)

    def _stopped(self, ex_id: int, ex: _Open, t: int, out: list[Exchange]) -> None:
        if ex.error:
            self._end(ex_id, ex, "error", t, out)
        elif self._at_end_marker(ex):
            self._end(ex_id, ex, "complete", t, out, by="end_marker")
        else:
            self._end(ex_id, ex, "abandoned", t, out)

    def _at_end_marker(self, ex: _Open) -> bool:
        if ex.head is None:
            return False
        d = ex.dechunk
        if d is not None and not d.at_boundary:
            return False
        ctype = _header(ex.head[4], "content-type")
        if not ctype:
            return False
        kind = ctype.split(";", 1)[0].strip().lower()
        if kind == "text/event-stream":
            limit = TAIL
        elif kind == "application/vnd.amazon.eventstream":
            if ex.nbody > MAX_FRAMES:
                return False
            limit = MAX_FRAMES
        else:
            return False
        ext = d.extents if d is not None else ex.ext
        return ends_with_marker(ctype, [LazyBody(self._files, _last(ext, limit)).load()])

    def _end(
        self, ex_id: int, ex: _Open, outcome: str, t: int, out: list[Exchange], by: str = "framing"
    ) -> None:
        del self._open[ex_id]
        try:
            out.append(self._exchange(ex_id, ex, outcome, t, by))
        except (ValueError, OverflowError) as exc:
            self._warn(ex.offset, f"exchange {ex_id} unusable ({exc}); skipped")

    def _exchange(self, ex_id: int, ex: _Open, outcome: str, t_end: int, by: str) -> Exchange:
        info = self.info
        run = info.run if info is not None else "unknown"
        wall = info.wall_ns + (ex.t0 - info.perf_ns) if info is not None else 0
        started = _EPOCH + timedelta(microseconds=wall // 1000)
        t0 = ex.t0
        head = ex.head
        d = ex.dechunk
        timing = Timing(
            None if ex.sent_t is None else ex.sent_t - t0,
            None if head is None else head[0] - t0,
            ex.reads[1] if ex.reads else None,
            max(t_end, ex.last_t) - t0,
        )
        for value in (timing.request_sent, timing.headers_received, timing.end):
            if value is not None and value < 0:
                raise ValueError(f"a time before the exchange started ({value} ns)")
        started + timedelta(microseconds=timing.end // 1000)  # exports add it: must fit
        response = None
        if head is not None:
            _, status, reason, head_version, headers = head
            if not 100 <= status <= 999:
                raise ValueError(f"status {status} out of range")
            response = Response(
                status=status,
                reason=reason,
                http_version="HTTP/1.0" if head_version == 10 else "HTTP/1.1",
                headers=headers,
                raw_body=LazyBody(self._files, d.extents if d is not None else ex.ext),
                framing=ex.framing,
                reads=list(zip(ex.reads[0::2], ex.reads[1::2])),
                decode_limits=self._limits,
            )
        method, target, version = ex.method, ex.target, ""
        req_headers: list[tuple[str, str]] = []
        body: LazyBody | None = None
        if ex.req is not None:
            r_method, r_target, version, req_headers, complete, chunked = ex.req
            method = r_method or method
            target = r_target or target
            has_body = chunked or any(n.lower() == "content-length" for n, _ in req_headers)
            if complete and (ex.req_ext or has_body):
                body = LazyBody(self._files, ex.req_ext, chunked=chunked)
        request = Request(
            method=method,
            url=url_of(ex.scheme, ex.host, ex.port, target),
            http_version=version,
            headers=req_headers,
            body=body,
            decode_limits=self._limits,
        )
        return Exchange(
            id=f"{run}.{ex_id}",
            logical_id=f"{run}.{ex.logical}",
            started_at=started,
            request=request,
            response=response,
            outcome=outcome,
            error=None if ex.error is None else ErrorInfo(*ex.error),
            timing=timing,
            source=(self._paths[-1], ex.offset),
            complete_by=by if outcome == "complete" else None,
        )


def _keep(ext: list[int], offset: int, size: int) -> None:
    if ext and ext[-2] + ext[-1] == offset:
        ext[-1] += size
    else:
        ext += (offset, size)


def _last(ext: list[int], limit: int) -> list[int]:
    """The extents of the last ``limit`` bytes of ``ext``."""
    out: list[int] = []
    left = limit
    for i in range(len(ext) - 2, -1, -2):
        offset, size = ext[i], ext[i + 1]
        take = min(size, left)
        out[:0] = (offset + size - take, take)
        left -= take
        if not left:
            break
    return out


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for n, v in headers:
        if n.lower() == name:
            return v
    return None


def _request_head(
    payload: bytes, complete: bool
) -> tuple[str, str, str, list[tuple[str, str]], bool, bool]:
    """(method, target, version, headers, complete, chunked) of a REQHEAD record."""
    lines = payload.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2) if lines and lines[0] else []
    headers: list[tuple[str, str]] = []
    for text in lines[1:] if parts else ():
        if text[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {text.strip()}")
            continue
        name, _, value = text.partition(":")
        headers.append((name, value.strip()))
    chunked = any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in headers)
    return (
        parts[0] if parts else "",
        parts[1] if len(parts) > 1 else "",
        parts[2] if len(parts) > 2 else "",
        headers,
        complete,
        chunked,
    )
