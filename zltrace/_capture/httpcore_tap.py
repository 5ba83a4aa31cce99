"""The httpcore(2) front-end's taps: network streams that report what crosses them (caller thread).

Rules:
- An HTTP/1.1 connection of httpcore (and of its fork httpcore2) writes exactly the bytes h11
  framed and reads exactly what the socket gave, through its ``_network_stream``. A tap stands
  in for that stream, forwards every call unchanged and reports: each write as SEND, each read
  after the response head as DATA (the chunk the caller gets next, the same ``bytes``, no
  copy), an empty read as EOF, and an exception out of a read as ERROR, then re-raises it.
- Reads before the head are not reported as they happen: when h11 has parsed the head, the
  bytes it holds unparsed (``h11.Connection.trailing_data``, public API) are the body's first
  bytes, reported right after the head. So the pipeline sees head, then body, as for urllib3.
- A tap reports only while an exchange is open on it (``ex``, set by the patched connection)
  and while its owner still has a sink: an undone install leaves taps in old connections that
  then forward silently.
- Failures of our own are counted by ``capture_failed``; the caller always gets exactly what
  the real stream returned or raised.
- Bytes of a proxy's CONNECT, a SOCKS handshake or TLS set-up cross no exchange: not reported.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

from .._pipeline.events import DATA, EOF, ERROR, HEAD, SEND, ResponseHead, capture_failed
from .tee import Sink


class Owner:
    """Who a tap reports to: a wrapped client's sink (for good) or an install's (until undone)."""

    __slots__ = ("sink",)

    def __init__(self, sink: Sink | None) -> None:
        self.sink = sink


class _TapBase:
    __slots__ = ("_owner", "_raw", "body", "ex", "in_request")

    def __init__(self, raw: Any, owner: Owner) -> None:
        self._raw = raw
        self._owner = owner
        self.ex = 0  # the exchange open on this connection, 0 for none
        self.body = False  # its head was reported: reads are body bytes
        self.in_request = False  # inside handle_request: an error there is reported by it

    @property
    def sink(self) -> Sink | None:
        return self._owner.sink

    def get_extra_info(self, info: str) -> Any:
        return self._raw.get_extra_info(info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    # -- reporting, called by the stream methods and the patched connection -------------------

    def _put(self, ev: tuple[Any, ...], where: str) -> None:
        try:
            sink = self._owner.sink
            if sink is not None:
                sink._put(ev)
        except Exception as e:
            capture_failed(where, e)

    def error(self, exc: BaseException) -> None:
        """Report ``exc`` for the open exchange (the first one reported wins)."""
        if self.ex:
            self._put((ERROR, self.ex, exc, perf_counter_ns()), "httpcore.error")

    def _wrote(self, buffer: Any) -> None:
        try:
            sink = self._owner.sink
            if sink is not None:
                data = buffer if type(buffer) is bytes else bytes(buffer)
                sink._put((SEND, self.ex, data, perf_counter_ns()))
        except Exception as e:
            capture_failed("httpcore.write", e)

    def head(self, method: bytes, parsed: Any, h11_state: Any) -> None:
        """Report the head ``_receive_response_headers`` returned, then the body bytes h11 holds."""
        if not self.ex:
            return
        try:
            sink = self._owner.sink
            if sink is None:
                return
            t = perf_counter_ns()
            http_version, status, reason, headers = parsed[:4]
            chunked = False
            length: int | None = None
            for name, value in headers:
                lowered = name.lower()
                if lowered == b"transfer-encoding":
                    # h11 accepts only "chunked" (or nothing) as the final coding.
                    chunked = b"chunked" in value.lower()
                elif lowered == b"content-length":
                    length = int(value)
            resp = ResponseHead(
                status,
                reason.decode("latin-1"),
                10 if http_version == b"HTTP/1.0" else 11,
                headers if type(headers) is list else list(headers),
                chunked,
                method.decode("latin-1"),
            )
            sink._put((HEAD, self.ex, t, resp, None if chunked else length))
            if status < 200:
                # 101 Switching Protocols: what follows is another protocol, not a body.
                self.ex = 0
                return
            early = h11_state.trailing_data[0]
            if early:
                sink._put((DATA, self.ex, bytes(early), t))
            self.body = True
        except Exception as e:
            capture_failed("httpcore.head", e)


class Tap(_TapBase):
    """Stands in for an httpcore ``NetworkStream``."""

    __slots__ = ()

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data: bytes = self._raw.read(max_bytes, timeout)
        except BaseException as exc:
            self.error(exc)
            raise
        if self.body:
            # Written out, not a helper call: this runs for every read of a body.
            try:
                sink = self._owner.sink
                if sink is not None:
                    if data:
                        sink._put((DATA, self.ex, data, perf_counter_ns()))
                    else:
                        sink._put((EOF, self.ex, perf_counter_ns()))
            except Exception as e:
                capture_failed("httpcore.read", e)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Recorded once written: bytes that never left are not "sent".
        self._raw.write(buffer, timeout)
        if self.ex:
            self._wrote(buffer)

    def close(self) -> None:
        self._raw.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> Tap:
        return Tap(self._raw.start_tls(*args, **kwargs), self._owner)


class AsyncTap(_TapBase):
    """Stands in for an httpcore ``AsyncNetworkStream``."""

    __slots__ = ()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data: bytes = await self._raw.read(max_bytes, timeout)
        except BaseException as exc:
            self.error(exc)
            raise
        if self.body:
            # Written out, not a helper call: this runs for every read of a body.
            try:
                sink = self._owner.sink
                if sink is not None:
                    if data:
                        sink._put((DATA, self.ex, data, perf_counter_ns()))
                    else:
                        sink._put((EOF, self.ex, perf_counter_ns()))
            except Exception as e:
                capture_failed("httpcore.read", e)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._raw.write(buffer, timeout)
        if self.ex:
            self._wrote(buffer)

    async def aclose(self) -> None:
        await self._raw.aclose()

    async def start_tls(self, *args: Any, **kwargs: Any) -> AsyncTap:
        return AsyncTap(await self._raw.start_tls(*args, **kwargs), self._owner)


class Backend:
    """A wrapped client's network backend: every stream it opens comes back tapped."""

    def __init__(self, raw: Any, owner: Owner) -> None:
        self._zl_raw = raw
        self._zl_owner = owner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> Tap:
        return Tap(self._zl_raw.connect_tcp(*args, **kwargs), self._zl_owner)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Tap:
        return Tap(self._zl_raw.connect_unix_socket(*args, **kwargs), self._zl_owner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._zl_raw, name)


class AsyncBackend(Backend):
    """The async twin of :class:`Backend`."""

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> AsyncTap:  # type: ignore[override]
        return AsyncTap(await self._zl_raw.connect_tcp(*args, **kwargs), self._zl_owner)

    async def connect_unix_socket(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> AsyncTap:
        return AsyncTap(await self._zl_raw.connect_unix_socket(*args, **kwargs), self._zl_owner)
