"""Traced connection classes: the request side of the tee (caller thread).

A traced connection subclasses whatever ``ConnectionCls`` the pool had. The traced pool
starts each exchange (in ``_make_request``) and sets ``_zl_sink``/``_zl_ex``; the connection
reports:

- ``send``: the exact bytes handed to the socket -- request line and headers as built by
  urllib3 and ``http.client``, then the body as framed on the wire. Capturing here never
  touches the user's body object, so urllib3 can still rewind it on a retry, and a one-shot
  generator is consumed once, by urllib3;
- ``response_class``: a factory for :class:`TracedResponse` bound to the current exchange
  (the traced subclass of the connection's own response class, bound arguments kept).

Bytes sent while ``connect()`` runs (a proxy's CONNECT) are not part of any exchange, nor
bytes a connection class drops itself (botocore's body after an early answer to
``Expect: 100-continue``).
"""

from __future__ import annotations

import functools
import http.client
import io
import warnings
from time import perf_counter_ns
from typing import Any

from .._pipeline.events import SEND, capture_failed
from .._util import ForkSafeLock
from ..exceptions import ZltraceWarning
from .tee import Sink, pending, traced_response_class


class TracedConnectionMixin:
    """Mixed in front of urllib3's HTTPConnection / HTTPSConnection (or a user's subclass)."""

    _zl_tracer: Sink | None = None  # set by the traced pool
    _zl_sink: Sink | None = None  # the tracer while an exchange is open on this connection
    _zl_ex = 0
    _zl_in_connect = False

    def connect(self) -> None:
        self._zl_in_connect = True
        try:
            super().connect()  # type: ignore[misc]
        finally:
            self._zl_in_connect = False

    def send(self, data: Any) -> None:
        sink = self._zl_sink
        if sink is None or self._zl_in_connect:
            super().send(data)  # type: ignore[misc]
            return
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                # The caller may reuse this buffer after send() returns: record a copy.
                super().send(data)  # type: ignore[misc]
                self._zl_sent(sink, bytes(data))
            elif hasattr(data, "read"):
                # What http.client does with a file, one block at a time, so each is seen.
                text = isinstance(data, io.TextIOBase)
                while True:
                    block = data.read(self.blocksize)  # type: ignore[attr-defined]
                    if not block:
                        return
                    self.send(block.encode("iso-8859-1") if text else block)
            elif isinstance(data, str):
                super().send(data)  # type: ignore[misc] # http.client raises its TypeError
            else:
                try:
                    chunks = iter(data)
                except TypeError:
                    super().send(data)  # type: ignore[misc] # http.client raises its own error
                    return
                for chunk in chunks:
                    self.send(chunk)
            return
        # Recorded once sent: bytes that never left (refused, reset) are not "sent". bytes
        # are immutable, so a reference is enough.
        super().send(data)  # type: ignore[misc]
        self._zl_sent(sink, data)

    def _zl_sent(self, sink: Sink, data: bytes) -> None:
        try:
            sink._put((SEND, self._zl_ex, data, perf_counter_ns()))
        except Exception as e:
            capture_failed("connection.send", e)

    @property
    def response_class(self) -> Any:
        # http.client builds its response with ``self.response_class(sock, method=...)`` and
        # calls begin() right away, on this thread: hand the exchange over through a
        # thread-local rather than a closure per response.
        d = self.__dict__
        # Written through the setter, or into the instance before this connection was traced.
        own: Any = d.get("_zl_response_class") or d.get("response_class")
        if own is None:
            own = super().response_class  # type: ignore[misc]
        sink = self._zl_sink
        if sink is None or self._zl_in_connect:
            return own
        cls: Any = traced_response_class(own)
        if cls is own:
            if type(own) is not functools.partial:
                return own  # not a response class we know how to tee
            # A partial of a response class: botocore's answer to an early reply to
            # ``Expect: 100-continue`` (the status line it read, bound as ``status_tuple``).
            cls = traced_response_class(own.func)
            if cls is own.func:
                return own
            cls = functools.partial(cls, *own.args, **own.keywords)
        pending.sink = sink
        pending.ex = self._zl_ex
        return cls

    @response_class.setter
    def response_class(self, value: Any) -> None:
        # Host libraries write it (botocore's AWSConnection, in request() and close()): the
        # value is kept and read back as written; while an exchange is open, its traced
        # subclass builds the response.
        self.__dict__["_zl_response_class"] = value


def _sent_unless_answered(self: Any, sink: Sink, data: bytes) -> None:
    """``_zl_sent`` for botocore's AWSConnection: once the server answered an
    ``Expect: 100-continue`` head early, its ``send`` drops the body: nothing is recorded."""
    if not getattr(self, "_response_received", False):
        TracedConnectionMixin._zl_sent(self, sink, data)


_classes: dict[type[Any], type[Any]] = {}
_classes_lock = ForkSafeLock()


def same_names(cls: type[Any], base: type[Any]) -> type[Any]:
    """Give a traced subclass its base's names, so reprs and exception texts read as the
    host library's own (``HTTPSConnectionPool(host=...)``, ``<urllib3.connection...>``)."""
    cls.__module__ = base.__module__
    cls.__qualname__ = base.__qualname__
    return cls


def traced_connection_class(base: type[Any]) -> type[Any]:
    """The traced subclass of connection class ``base`` (made once, then cached)."""
    if issubclass(base, TracedConnectionMixin):
        return base
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            ns: dict[str, Any] = {}
            if hasattr(base, "_handle_expect_response"):
                ns["_zl_sent"] = _sent_unless_answered  # botocore's AWSConnection
            cls = same_names(type(base.__name__, (TracedConnectionMixin, base), ns), base)
            _classes[base] = cls
        return cls


def is_traced_class(cls: type[Any]) -> bool:
    """Whether ``cls`` is one of zltrace's traced subclasses."""
    return issubclass(cls, TracedConnectionMixin)


def recordable(cls: type[Any]) -> str | None:
    """None if connections of class ``cls`` can be recorded, else why not.

    Recording rests on ``http.client``: the request goes out through ``send`` and the
    response is built by ``response_class``. urllib3's HTTP/2 connection does neither (it
    frames through ``h2``); a stand-in object (a test's mock) is no ``http.client``
    connection at all. Such exchanges are not recorded, and counted (see ``unrecorded``).
    """
    if not isinstance(cls, type) or not issubclass(cls, http.client.HTTPConnection):
        return "not an http.client connection"
    if any(c.__name__ == "HTTP2Connection" for c in cls.__mro__):
        return "HTTP/2"
    return None


_unrecorded: dict[str, int] = {}


def unrecorded() -> dict[str, int]:
    """Exchanges seen but not recorded, per reason (a copy)."""
    return dict(_unrecorded)


def reset_unrecorded() -> None:
    """Forget the counts, so the next unrecordable exchange warns again (for tests)."""
    _unrecorded.clear()


def adopt(conn: Any) -> bool:
    """Make ``conn`` record (its class becomes the traced subclass of its own class); False,
    counted and warned about once per reason, when it cannot be recorded.

    The connection class is looked up here, when the connection is used, never when a pool
    is wrapped: a ``ConnectionCls`` changed later (``urllib3.http2.inject_into_urllib3()``,
    a test's own class) is honoured exactly as urllib3 honours it.
    """
    cls = type(conn)
    if issubclass(cls, TracedConnectionMixin):
        return True
    why = recordable(cls)
    if why is None:
        try:
            conn.__class__ = traced_connection_class(cls)
            return True
        except TypeError as e:  # a layout that refuses (extension type, __slots__)
            why = f"class {cls.__qualname__} cannot be traced: {e}"
    first = why not in _unrecorded
    _unrecorded[why] = _unrecorded.get(why, 0) + 1
    if first:
        try:
            warnings.warn(
                f"zltrace: an exchange over {cls.__module__}.{cls.__qualname__} was not "
                f"recorded ({why}); further ones are counted in stats()['unrecorded_exchanges']",
                ZltraceWarning,
                stacklevel=2,
            )
        except Exception:  # a host running with warnings as errors: counted, never raised
            pass
    return False
