"""Turns the caller's events into finished exchanges (worker thread, or caller in standard mode).

Rules:
- Pure bookkeeping, no I/O of its own: events in, :class:`Finished` exchanges out, each
  exactly once. The side file is reached only through the ``store`` and ``load`` that
  :meth:`Assembler.spill` is handed (spilling under memory pressure, and gathering the
  arrival times spilled that way when their exchange ends).
- Per event the work is O(1) Python plus slicing; no large body piece is copied or joined
  here. What an exchange holds of its response (pieces kept by reference, small ones
  compacted, arrival times packed) and what that costs in memory is :mod:`.inflight`'s.
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

from collections.abc import Sequence
from typing import Any

from .._assembly.endmark import ends_with_marker
from .events import CLOSE, DATA, EOF, ERROR, HEAD, SEND, START
from .finished import Buffer, Extent, Finished, Piece, StoredReads
from .heads import HeadEncoder
from .inflight import InFlight, Load, Store
from .redact import Redactor
from .sizes import BYTES_COST, SLOT

__all__ = ["Assembler", "Buffer", "Dechunker", "Extent", "Finished", "Piece"]


class Dechunker:
    """Incremental parser of HTTP/1.1 chunked framing; collects the payload into ``body``."""

    __slots__ = ("body", "crlf_left", "done", "error", "left", "line", "state")

    SIZE, DATA, CRLF, TRAILER, DONE = range(5)

    def __init__(self, body: InFlight) -> None:
        self.state = self.SIZE
        self.line = b""
        self.left = 0
        self.crlf_left = 0
        self.body = body
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
                self.body.add_slice(data, i, i + take)
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
        "body",
        "dechunk",
        "dropped",
        "dropped_reads",
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
        "port",
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
        self.body = InFlight()
        self.last_t = t0
        self.error: dict[str, str] | None = None
        #: Memory this exchange holds (objects included), for the budget: what was sent
        #: and ``body.cost``.
        self.held = self.body.cost
        self.dropped = 0  # body bytes dropped: budget full and nowhere to spill them
        self.dropped_reads = 0  # arrival times dropped with them


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
        self.bytes_held = 0  # memory held by open exchanges, objects included
        self.data_bytes = 0  # response bytes seen in all (for the queue's byte estimate)
        # The side file, as the last spill reached it: spilled arrival times are gathered
        # from it when their exchange ends.
        self._store: Store | None = None
        self._load: Load | None = None

    @property
    def open_count(self) -> int:
        return len(self._open)

    def spill(self, store: Store, target: int, load: Load | None = None) -> int:
        """Move response bodies (and arrival times) of open exchanges, largest first, out of
        memory.

        ``store`` writes buffers somewhere durable (the side file) and returns the offset
        they start at; the pieces are replaced by an :class:`Extent`. Arrival times are
        moved too when ``load`` can read them back at the exchange's end. Stops once
        ``bytes_held <= target``; an ``OSError`` from ``store`` propagates. Returns the
        bytes stored.
        """
        self._store, self._load = store, load
        stored = 0
        for ex in sorted(self._open.values(), key=lambda e: e.held, reverse=True):
            if self.bytes_held <= target:
                break
            body = ex.body
            before = body.cost
            # What stays referenced is the request; the response's chunks are released
            # (framing bytes included: the slices were their only references).
            stored += body.spill(store, times=load is not None)
            released = before - body.cost
            ex.held -= released
            self.bytes_held -= released
        return stored

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
                cost = len(ev[2]) + BYTES_COST + SLOT
                ex.held += cost
                self.bytes_held += cost
        elif kind == START:
            _, n, prev, logical, t, scheme, host, port, method, target = ev
            if prev in self._open:
                self._stopped(self._open[prev], t, out)
            ex = self._open[n] = _Open(n, logical, t, scheme, host, port, str(method), str(target))
            self.bytes_held += ex.held
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
            ex.dechunk = Dechunker(ex.body)
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
        body = ex.body
        self.data_bytes += len(data)
        dechunk = ex.dechunk
        if dechunk is not None:
            before = body.cost
            if dechunk.feed(data):
                body.arrived(t - ex.t0)
            added = body.cost - before
            ex.held += added
            self.bytes_held += added
            if dechunk.done or dechunk.error:
                if dechunk.error:
                    ex.error = {"type": "zltrace.FramingError", "message": dechunk.error}
                    self._end(ex, "error", t, out)
                else:
                    self._end(ex, "complete", t, out)
                return
        else:
            added = body.add(data, t - ex.t0)
            ex.held += added
            self.bytes_held += added
            if ex.length is not None and body.size >= ex.length:
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
                msg = f"connection closed after {ex.body.size} of {ex.length} body bytes"
            else:
                msg = f"connection closed before the last chunk ({ex.body.size} body bytes read)"
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
        self.bytes_held -= ex.held
        finished = self._finish(ex, outcome, t)
        if outcome == "complete":
            finished.complete_by = by
        out.append(finished)

    def drop_bodies(self, target: int) -> int:
        """Last resort (budget full, side file unwritable): forget in-flight body bytes,
        largest first, until ``bytes_held <= target``; the records will say how many.
        Their arrival times held in memory go too. Returns the body bytes dropped."""
        dropped = 0
        for ex in sorted(self._open.values(), key=lambda e: e.held, reverse=True):
            if self.bytes_held <= target:
                break
            body = ex.body
            before = body.cost
            size, pairs = body.drop()
            ex.dropped += size
            ex.dropped_reads += pairs
            dropped += size
            ex.held -= before - body.cost
            self.bytes_held -= before - body.cost
        return dropped

    # -- building the record ---------------------------------------------------------------

    def _finish(self, ex: _Open, outcome: str, t_end: int) -> Finished:
        request_json, request_body, secrets = self._request(ex)
        reads = self._reads(ex) if ex.head is not None else None
        if (ex.dropped or ex.dropped_reads) and ex.error is None:
            ex.error = {
                "type": "zltrace.BodyDropped",
                "message": f"{ex.dropped} response body bytes (and the arrival times of "
                f"{ex.dropped_reads} reads) were not kept: the memory budget was full and the "
                "side file could not be written",
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
            ex.body.pieces() if ex.head is not None else None,
            reads,
            outcome,
            error,
            (
                None if ex.sent_t is None else ex.sent_t - t0,
                None if ex.head is None else ex.head[0] - t0,
                ex.body.first,
                max(t_end, ex.last_t) - t0,
            ),
        )

    def _reads(self, ex: _Open) -> Sequence[int] | StoredReads:
        """The body's arrival times; those spilled in flight gathered into one side-file
        block. If that fails they are left out, and the record says so."""
        try:
            return ex.body.reads(self._store, self._load)
        except OSError as exc:
            if ex.error is None:
                ex.error = {
                    "type": "zltrace.TimingsLost",
                    "message": f"the arrival times of the body's {ex.body.count} reads could "
                    f"not be read back from the side file: {exc}",
                }
            return []

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
                d = Dechunker(InFlight())
                for piece in rest:
                    d.feed(bytes(piece) if isinstance(piece, memoryview) else piece)
                body = d.body.pieces()
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
    return ends_with_marker(_content_type(ex.head[4]), ex.body.pieces())


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
