"""Turns the caller's events into finished exchanges (worker thread, or caller in standard mode).

Rules:
- Pure bookkeeping, no I/O: events in, :class:`Finished` exchanges out, each exactly once.
- Per event the work is O(1) Python plus slicing; no body is copied or joined here. Body
  pieces stay references to the ``bytes`` the caller read (or ``memoryview`` slices of them
  where chunk framing has to be cut away), so the writer can hand them to ``os.writev``.
- An exchange ends at the first of: its body is complete by its framing (Content-Length
  reached, the zero-size chunk and its trailers read, end of stream for close-delimited
  bodies); end of stream before that (outcome ``error``); ``close()`` of the response before
  that (``error`` if an exception was seen, else ``abandoned``); an error raised out of
  urllib3's ``_make_request`` (``error``); a new request on the same connection while it is
  still open (``abandoned``: the app released the connection unread); the tracer shutting
  down (``incomplete``). Events for an exchange that has ended are ignored.
- A close (or a reuse of the connection) after the body's own end marker was read, and on a
  chunk boundary, is ``complete`` too: the app had the whole answer (``endmark`` says why).
  ``complete_by`` records which applied: ``framing`` or ``end_marker``.
"""

from __future__ import annotations

from typing import Any, Callable

from .._assembly.endmark import ends_with_marker
from .events import CLOSE, DATA, EOF, ERROR, HEAD, SEND, START
from .finished import Buffer, Extent, Finished, Piece
from .heads import HeadEncoder
from .redact import Redactor

__all__ = ["Assembler", "Buffer", "Dechunker", "Extent", "Finished", "Piece"]


class Dechunker:
    """Incremental parser of HTTP/1.1 chunked framing; collects the payload as slices."""

    __slots__ = ("crlf_left", "done", "error", "left", "line", "pieces", "state")

    SIZE, DATA, CRLF, TRAILER, DONE = range(5)

    def __init__(self) -> None:
        self.state = self.SIZE
        self.line = b""
        self.left = 0
        self.crlf_left = 0
        self.pieces: list[Piece] = []
        self.done = False
        self.error: str | None = None

    def feed(self, data: bytes) -> int:
        """Consume ``data``; return how many payload bytes it carried."""
        n = len(data)
        i = 0
        got = 0
        while i < n:
            state = self.state
            if state == self.DATA:
                take = min(self.left, n - i)
                if i == 0 and take == n:
                    self.pieces.append(data)
                else:
                    self.pieces.append(memoryview(data)[i : i + take])
                i += take
                got += take
                self.left -= take
                if not self.left:
                    self.state = self.CRLF
                    self.crlf_left = 2
            elif state == self.CRLF:
                take = min(self.crlf_left, n - i)
                i += take
                self.crlf_left -= take
                if not self.crlf_left:
                    self.state = self.SIZE
            elif state == self.DONE:
                return got  # bytes after the end belong to nobody (http.client stops reading)
            else:
                j = data.find(b"\n", i)
                if j < 0:
                    self.line += data[i:]
                    return got
                line = self.line + data[i : j + 1]
                self.line = b""
                i = j + 1
                if state == self.TRAILER:
                    if line in (b"\r\n", b"\n"):
                        self.state = self.DONE
                        self.done = True
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.error = f"invalid chunk size line {line[:40]!r}"
                    self.state = self.DONE
                    return got
                if size == 0:
                    self.state = self.TRAILER
                else:
                    self.state = self.DATA
                    self.left = size
        return got


class _Open:
    __slots__ = (
        "dechunk",
        "dropped",
        "error",
        "ex",
        "framing",
        "head",
        "held",
        "host",
        "last_t",
        "length",
        "logical",
        "method",
        "nbody",
        "pieces",
        "port",
        "reads",
        "scheme",
        "sent",
        "sent_t",
        "t0",
        "target",
    )

    def __init__(
        self,
        ex: int,
        logical: int,
        t0: int,
        scheme: str,
        host: str,
        port: int | None,
        method: str,
        target: str,
    ) -> None:
        self.ex = ex
        self.method = method
        self.target = target
        self.logical = logical
        self.t0 = t0
        self.scheme = scheme
        self.host = host
        self.port = port
        self.sent: list[bytes] = []
        self.sent_t: int | None = None
        self.head: tuple[Any, ...] | None = None
        self.framing = "none"
        self.length: int | None = None
        self.dechunk: Dechunker | None = None
        self.pieces: list[Piece] = []
        self.reads: list[int] = []
        self.nbody = 0
        self.last_t = t0
        self.error: dict[str, str] | None = None
        self.held = 0  # bytes referenced by this exchange, for the memory budget
        self.dropped = 0  # body bytes dropped: budget full and nowhere to spill them


def _error_info(exc: BaseException) -> dict[str, str]:
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ != "builtins":
        name = f"{cls.__module__}.{name}"
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break the worker
        message = "<unprintable>"
    return {"type": name, "message": message}


class Assembler:
    """Per-exchange state for one tracer; ``handle(event)`` returns the exchanges it ended."""

    def __init__(self, run_id: str, wall0_ns: int, perf0_ns: int, redactor: Redactor) -> None:
        self._open: dict[int, _Open] = {}
        self._run = run_id
        self._wall0 = wall0_ns
        self._perf0 = perf0_ns
        self._heads = HeadEncoder(redactor)
        self.bytes_held = 0
        self.data_bytes = 0  # response bytes seen in all (for the queue's byte estimate)

    @property
    def open_count(self) -> int:
        return len(self._open)

    def spill(self, store: Callable[[list[Buffer]], int], target: int) -> int:
        """Move response bodies of open exchanges, largest first, out of memory.

        ``store`` writes the pieces somewhere durable (the side file) and returns the offset
        they start at; the pieces are replaced by an :class:`Extent`. Stops once
        ``bytes_held <= target``; an ``OSError`` from ``store`` propagates. Returns the bytes
        freed.
        """
        freed = 0
        for ex in sorted(self._open.values(), key=lambda e: e.held, reverse=True):
            if self.bytes_held <= target:
                break
            pieces = ex.dechunk.pieces if ex.dechunk is not None else ex.pieces
            buffers = [p for p in pieces if not isinstance(p, Extent)]
            if not buffers:
                continue
            size = sum(len(b) for b in buffers)
            offset = store(buffers)
            kept = [p for p in pieces if isinstance(p, Extent)]
            if store is _drop:
                ex.dropped += size
            elif kept and kept[-1].offset + kept[-1].size == offset:
                kept[-1] = Extent(kept[-1].offset, kept[-1].size + size)
            else:
                kept.append(Extent(offset, size))
            pieces[:] = kept  # in place: the Dechunker keeps appending to this list
            # What stays referenced is the request; the response's chunks are released
            # (framing bytes included: the slices were their only references).
            sent = sum(len(b) for b in ex.sent)
            released = ex.held - sent
            ex.held = sent
            self.bytes_held -= released
            freed += released
        return freed

    def handle(self, ev: tuple[Any, ...], out: list[Finished]) -> None:
        """Apply one event; append any exchange it ended to ``out``."""
        kind = ev[0]
        if kind == DATA:
            ex = self._open.get(ev[1])
            if ex is not None:
                self._data(ex, ev[2], ev[3], out)
        elif kind == SEND:
            ex = self._open.get(ev[1])
            if ex is not None:
                ex.sent.append(ev[2])
                ex.sent_t = ex.last_t = ev[3]
                ex.held += len(ev[2])
                self.bytes_held += len(ev[2])
        elif kind == START:
            _, n, prev, logical, t, scheme, host, port, method, target = ev
            if prev in self._open:
                self._stopped(self._open[prev], t, out)
            self._open[n] = _Open(n, logical, t, scheme, host, port, str(method), str(target))
        elif kind == HEAD:
            ex = self._open.get(ev[1])
            if ex is not None:
                self._head(ex, ev, out)
        elif kind == EOF:
            ex = self._open.get(ev[1])
            if ex is not None:
                self._eof(ex, ev[2], out)
        elif kind == CLOSE:
            ex = self._open.get(ev[1])
            if ex is not None:
                self._stopped(ex, ev[2], out)
        elif kind == ERROR:
            ex = self._open.get(ev[1])
            if ex is not None:
                if ex.error is None:
                    ex.error = _error_info(ev[2])
                ex.last_t = ev[3]
                if ex.head is None:
                    # Raised out of the request before any response: nothing more will come.
                    self._end(ex, "error", ev[3], out)

    def _head(self, ex: _Open, ev: tuple[Any, ...], out: list[Finished]) -> None:
        _, _, t, resp, length = ev
        status = resp.status
        method = resp._method
        chunked = resp.chunked
        ex.head = (t, status, resp.reason, resp.version, resp.msg)
        ex.last_t = t
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            # No body whatever the headers say (http.client keeps ``chunked`` set for these).
            self._end(ex, "complete", t, out)
        elif chunked:
            ex.framing = "chunked"
            ex.dechunk = Dechunker()
        elif length is None:
            ex.framing = "close"
        else:
            ex.framing = "length"
            ex.length = length
            if length == 0:
                self._end(ex, "complete", t, out)

    def _data(self, ex: _Open, data: bytes, t: int, out: list[Finished]) -> None:
        ex.last_t = t
        if ex.head is None:
            return
        n = len(data)
        ex.held += n
        self.bytes_held += n
        self.data_bytes += n
        dechunk = ex.dechunk
        if dechunk is not None:
            got = dechunk.feed(data)
            if got:
                ex.nbody += got
                ex.reads += (ex.nbody, t - ex.t0)
            if dechunk.done or dechunk.error:
                ex.pieces = dechunk.pieces
                if dechunk.error:
                    ex.error = {"type": "zltrace.FramingError", "message": dechunk.error}
                    self._end(ex, "error", t, out)
                else:
                    self._end(ex, "complete", t, out)
                return
        else:
            ex.pieces.append(data)
            ex.nbody += len(data)
            ex.reads += (ex.nbody, t - ex.t0)
            if ex.length is not None and ex.nbody >= ex.length:
                self._end(ex, "complete", t, out)
                return

    def _eof(self, ex: _Open, t: int, out: list[Finished]) -> None:
        if ex.head is None:
            return
        if ex.framing == "close":
            self._end(ex, "complete", t, out)
            return
        if ex.error is None:
            if ex.framing == "length":
                msg = f"connection closed after {ex.nbody} of {ex.length} body bytes"
            else:
                msg = f"connection closed before the last chunk ({ex.nbody} body bytes read)"
            ex.error = {"type": "zltrace.IncompleteBody", "message": msg}
        self._end(ex, "error", t, out)

    def _stopped(self, ex: _Open, t: int, out: list[Finished]) -> None:
        """The app closed the response, or reused its connection, before the body's end."""
        if ex.error:
            self._end(ex, "error", t, out)
        elif _at_end_marker(ex):
            self._end(ex, "complete", t, out, by="end_marker")
        else:
            self._end(ex, "abandoned", t, out)

    def finish_all(self, t: int, out: list[Finished]) -> None:
        """End every open exchange as ``incomplete`` (the tracer is shutting down)."""
        for ex in list(self._open.values()):
            self._end(ex, "incomplete", t, out)

    def _end(
        self, ex: _Open, outcome: str, t: int, out: list[Finished], by: str = "framing"
    ) -> None:
        del self._open[ex.ex]
        if ex.dechunk is not None:
            ex.pieces = ex.dechunk.pieces
        self.bytes_held -= ex.held
        finished = self._finish(ex, outcome, t)
        if outcome == "complete":
            finished.complete_by = by
        out.append(finished)

    def drop_bodies(self, target: int) -> int:
        """Last resort (budget full, side file unwritable): forget in-flight body bytes,
        largest first, until ``bytes_held <= target``; the records will say how many."""
        return self.spill(_drop, target)

    # -- building the record ---------------------------------------------------------------

    def _finish(self, ex: _Open, outcome: str, t_end: int) -> Finished:
        request_json, request_body, secrets = self._request(ex)
        if ex.dropped and ex.error is None:
            ex.error = {
                "type": "zltrace.BodyDropped",
                "message": f"{ex.dropped} response body bytes were not kept: the memory budget "
                "was full and the side file could not be written",
            }
        error = ex.error
        if error is not None:
            error["message"] = self._heads.scrub(error["message"], secrets)
        t0 = ex.t0
        response_json = None
        if ex.head is not None:
            _, status, reason, version, msg = ex.head
            response_json = self._heads.response(status, reason, version, msg, ex.framing)
        return Finished(
            f"{self._run}.{ex.ex}",
            f"{self._run}.{ex.logical}",
            self._wall0 + (t0 - self._perf0),
            request_json,
            request_body,
            response_json,
            ex.pieces if ex.head is not None else None,
            ex.reads if ex.head is not None else None,
            outcome,
            error,
            (
                None if ex.sent_t is None else ex.sent_t - t0,
                None if ex.head is None else ex.head[0] - t0,
                ex.reads[1] if ex.reads else None,
                max(t_end, ex.last_t) - t0,
            ),
        )

    def _request(self, ex: _Open) -> tuple[str, list[Piece] | None, list[tuple[str, str]]]:
        """The request's JSON fragment (without its body), its body pieces, its secrets.

        The head is located without joining the body: a large upload stays the caller's
        own ``bytes`` objects (sliced, never copied), so its size costs no GIL time here.
        """
        head, rest = _split_head(ex.sent)
        parsed = self._heads.request(
            head, rest is not None, ex.scheme, ex.host, ex.port, ex.method, ex.target
        )
        body: list[Piece] | None = None
        if rest is not None:
            if parsed.chunked:
                d = Dechunker()
                for piece in rest:
                    d.feed(bytes(piece) if isinstance(piece, memoryview) else piece)
                body = d.pieces
            elif rest or parsed.has_body:
                body = list(rest)
        return parsed.fragment, body, parsed.secrets


def _at_end_marker(ex: _Open) -> bool:
    """Whether what the app read of the body ends with its stream's own end marker."""
    if ex.head is None:
        return False
    d = ex.dechunk
    if d is not None and not (d.state in (d.SIZE, d.CRLF) and not d.line and not d.error):
        return False  # stopped inside a chunk
    pieces = d.pieces if d is not None else ex.pieces
    return ends_with_marker(_content_type(ex.head[4]), pieces)


def _content_type(msg: Any) -> str | None:
    """The Content-Type of a head: an ``http.client`` message, or a ``ResponseHead``'s list
    of ``(name, value)`` pairs (bytes or str)."""
    if not isinstance(msg, list):
        value = msg.get("content-type")
        return value if isinstance(value, str) else None
    for name, value in msg:
        n = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        if n.lower() == "content-type":
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _drop(buffers: list[Buffer]) -> int:
    return -1


def _split_head(sent: list[bytes]) -> tuple[bytes, list[Buffer] | None]:
    """Split what was sent into the header block and the body pieces (None: no full head)."""
    head = b""
    for i, piece in enumerate(sent):
        start = max(0, len(head) - 3)  # the blank line may straddle two pieces
        head += piece
        end = head.find(b"\r\n\r\n", start)
        if end >= 0:
            cut = end + 4 - (len(head) - len(piece))  # where the body starts in this piece
            rest: list[Buffer] = []
            if cut < len(piece):
                rest.append(memoryview(piece)[cut:] if cut else piece)
            rest.extend(sent[i + 1 :])
            return head[:end], rest
        if len(head) > 1 << 20:  # not an HTTP head; do not grow without bound
            break
    return head, None
