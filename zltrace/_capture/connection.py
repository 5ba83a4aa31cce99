"""Traced connection classes: the request side of the tee (caller thread).

A traced connection subclasses whatever ``ConnectionCls`` the pool had. The traced pool
starts each exchange (in ``_make_request``) and sets ``_zl_sink``/``_zl_ex``; the connection
reports:

- ``send``: the exact bytes handed to the socket -- request line and headers as built by
  urllib3 and ``http.client``, then the body as framed on the wire. Capturing here never
  touches the user's body object, so urllib3 can still rewind it on a retry, and a one-shot
  generator is consumed once, by urllib3;
- ``response_class``: a factory for :class:`TracedResponse` bound to the current exchange.

Bytes sent while ``connect()`` runs (a proxy's CONNECT) are not part of any exchange.
"""

from __future__ import annotations

import http.client
import io
from time import perf_counter_ns
from typing import Any

from .._pipeline.events import SEND, capture_failed
from .._util import ForkSafeLock
from .tee import Sink, TracedResponse, pending


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
        sink = self._zl_sink
        if sink is None or self._zl_in_connect:
            return http.client.HTTPResponse
        pending.sink = sink
        pending.ex = self._zl_ex
        return TracedResponse


_classes: dict[type[Any], type[Any]] = {}
_classes_lock = ForkSafeLock()


def traced_connection_class(base: type[Any]) -> type[Any]:
    """The traced subclass of connection class ``base`` (made once, then cached)."""
    if issubclass(base, TracedConnectionMixin):
        return base
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            cls = type(
                f"Traced{base.__name__}", (TracedConnectionMixin, base), {"__module__": __name__}
            )
            _classes[base] = cls
        return cls
