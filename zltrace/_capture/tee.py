"""The response tee: a wrapper around ``http.client.HTTPResponse.fp`` (caller thread).

Rules (``tests/test_pinned_internals.py`` pins the urllib3 behaviour they rest on): every
way urllib3 1.26 and 2.x consume a body ends in ``read``, ``read1``, ``readinto`` or
``readline`` on the socket file that ``http.client`` keeps as ``fp`` -- including
``read_chunked``, which reaches past urllib3's own read helpers. So the tee sits exactly
there, installed by :class:`TracedResponse` right after the status line and headers were
parsed, and sees the body bytes *with* chunk framing. De-chunking and deciding whether the
body is complete happen on the worker thread, never here.

Per read the caller pays one ``perf_counter_ns`` and one ``SimpleQueue.put`` of a tuple that
holds a reference to the ``bytes`` object the caller gets anyway -- no copy, except for
``readinto``, whose buffer belongs to the caller and may be reused. Any failure of our own
is swallowed and counted: the caller always gets exactly what the real file returned, and
exactly the exceptions it raised. The four read methods are written out in full, not
around a shared helper: a helper would add a Python call to every read on the caller's
thread.
"""

from __future__ import annotations

import http.client
import threading
from time import perf_counter_ns
from typing import Any, Callable, Protocol

from .._pipeline.events import CLOSE, DATA, EOF, ERROR, HEAD, capture_failed


class Sink(Protocol):
    """Where events go: the tracer. Its ``_put`` is looked up per event, so close() and fork
    can redirect streams that are already in flight."""

    _put: Callable[[tuple[Any, ...]], None]


class Tee:
    """Stands in for the socket file of one response; forwards every call, reports what it read."""

    __slots__ = ("_ex", "_raw", "_sink")

    def __init__(self, raw: Any, sink: Sink, ex: int) -> None:
        self._raw = raw
        self._sink = sink
        self._ex = ex

    def _error(self, exc: BaseException) -> None:
        try:
            self._sink._put((ERROR, self._ex, exc, perf_counter_ns()))
        except Exception as e:  # pragma: no cover - put on a SimpleQueue does not fail
            capture_failed("tee.error", e)

    def read(self, amt: int | None = None) -> bytes:
        try:
            data: bytes = self._raw.read(amt)
        except BaseException as exc:
            self._error(exc)
            raise
        try:
            t = perf_counter_ns()
            if data:
                self._sink._put((DATA, self._ex, data, t))
            # A blocking BufferedReader returns short only at end of stream.
            if amt is None or amt < 0 or len(data) < amt:
                self._sink._put((EOF, self._ex, t))
        except Exception as e:
            capture_failed("tee.read", e)
        return data

    def read1(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._raw.read1(n)
        except BaseException as exc:
            self._error(exc)
            raise
        try:
            t = perf_counter_ns()
            if data:
                self._sink._put((DATA, self._ex, data, t))
            elif n != 0:
                self._sink._put((EOF, self._ex, t))
        except Exception as e:
            capture_failed("tee.read1", e)
        return data

    def readinto(self, b: Any) -> int | None:
        try:
            n: int | None = self._raw.readinto(b)
        except BaseException as exc:
            self._error(exc)
            raise
        try:
            t = perf_counter_ns()
            if n:
                # The caller owns ``b`` and may reuse it: this is the one copy the tee makes.
                with memoryview(b) as view:
                    self._sink._put((DATA, self._ex, view[:n].tobytes(), t))
            if n is not None and n < memoryview(b).nbytes:
                self._sink._put((EOF, self._ex, t))
        except Exception as e:
            capture_failed("tee.readinto", e)
        return n

    def readline(self, limit: int = -1) -> bytes:
        try:
            data: bytes = self._raw.readline(limit)
        except BaseException as exc:
            self._error(exc)
            raise
        try:
            t = perf_counter_ns()
            if data:
                self._sink._put((DATA, self._ex, data, t))
            if not data.endswith(b"\n") and (limit is None or limit < 0 or len(data) < limit):
                self._sink._put((EOF, self._ex, t))
        except Exception as e:
            capture_failed("tee.readline", e)
        return data

    def peek(self, n: int = 0) -> bytes:
        # Peeked bytes are not consumed; they are reported when they are read.
        data: bytes = self._raw.peek(n)
        return data

    def close(self) -> None:
        # Also reached when an unread response is garbage-collected: io.IOBase's finalizer
        # closes urllib3's response, which closes http.client's, which closes its fp (us).
        # A second close is harmless: events for an ended exchange are ignored.
        try:
            self._sink._put((CLOSE, self._ex, perf_counter_ns()))
        except Exception as e:
            capture_failed("tee.close", e)
        self._raw.close()

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def flush(self) -> None:
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:
        # Anything else (readable(), mode, raw, ...) is the real file's.
        return getattr(self._raw, name)


class _Pending(threading.local):
    sink: Sink | None = None
    ex = 0


#: The exchange the next TracedResponse on this thread belongs to (set by the connection's
#: ``response_class`` right before http.client builds the response and calls begin()).
pending = _Pending()


class TracedResponse(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` that reports its head and swaps its socket file for a Tee."""

    def begin(self) -> None:
        sink = pending.sink
        ex = pending.ex
        pending.sink = None
        try:
            super().begin()
        except BaseException as exc:
            # No usable response head (timeout, reset, bad status line). The pool reports
            # the error too; this one covers responses read outside ``_make_request``.
            if sink is not None:
                try:
                    sink._put((ERROR, ex, exc, perf_counter_ns()))
                except Exception as e:
                    capture_failed("response.begin", e)
            raise
        if sink is None:
            return
        try:
            # The response itself goes on the queue: status, reason, version, headers and
            # framing are read from it by the worker (they do not change once parsed), except
            # ``length``, which http.client counts down as the body is read.
            sink._put((HEAD, ex, perf_counter_ns(), self, self.length))
            if self.fp is not None:
                self.fp = Tee(self.fp, sink, ex)  # type: ignore[assignment]
        except Exception as e:
            capture_failed("response.begin", e)


_response_classes: dict[type[Any], type[Any]] = {http.client.HTTPResponse: TracedResponse}
_response_lock = threading.Lock()


def traced_response_class(base: Any) -> Any:
    """The response class that records: ``TracedResponse`` for ``http.client``'s own, a
    traced subclass for a host library's (botocore's ``AWSHTTPResponse``)."""
    cls = _response_classes.get(base)
    if cls is not None:
        return cls
    if not (isinstance(base, type) and issubclass(base, http.client.HTTPResponse)):
        return base  # not a response class we know how to tee: left as it is
    with _response_lock:
        cls = _response_classes.get(base)
        if cls is None:
            cls = type(base.__name__, (TracedResponse, base), {})
            cls.__module__ = base.__module__
            cls.__qualname__ = base.__qualname__
            _response_classes[base] = cls
        return cls
