r"""Fast loopback HTTP/1.1 keep-alive server for ``python -m zltrace bench`` (stdlib only).

The server runs in a separate process (started by ``serverproc.BenchServer``) so that it never
competes with the benchmark process for the GIL. This file is that process's program: it runs
as a script in isolated mode and so imports nothing but the standard library. It is built on a
low-level :class:`asyncio.Protocol` with minimal request parsing and canned responses prebuilt
as bytes and cached per request target, so that the server, not the client, is never what
limits a measurement.

Routes (``GET`` or ``POST``; ``Content-Length`` request bodies are read and discarded):

* ``/bytes?size=N`` -- ``application/octet-stream``, N bytes of a fixed pseudo-random pattern.
* ``/json?size=N`` -- ``application/json``, a JSON document of exactly N bytes.
* ``/chunked?size=N&chunk=C`` -- N pattern bytes sent chunked, C bytes per chunk.
* ``/sse?events=N&size=S&gap_ms=G`` -- ``text/event-stream``, chunked, one chunk per
  ``data: <S bytes>\n\n`` event, G milliseconds between events (all at once if G == 0).
* anything else -- 404.

Command line: ``python -m zltrace._cli.bench.server --port 0`` binds 127.0.0.1, prints
``PORT <n>`` as its first stdout line and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import signal
import socket
import sys
import threading
from typing import NamedTuple, cast
from urllib.parse import parse_qs

__all__ = ["HOST", "main"]

HOST = "127.0.0.1"

_MAX_HEADER = 64 * 1024  # bytes of request head (request line + headers)
_MAX_BUFFER = 4 * 1024 * 1024  # unprocessed pipelined input before reading is paused
_MAX_SIZE = 64 * 1024 * 1024  # largest body a route will build
_MAX_PIECES = 1_000_000  # largest number of chunks / events in one response
_MAX_GAP_MS = 60_000.0
_CACHE_MAX_ENTRIES = 4096
_CACHE_MAX_BYTES = 256 * 1024 * 1024

_DEFAULT_SIZE = 1024
_DEFAULT_CHUNK = 4096
_DEFAULT_EVENTS = 10
_DEFAULT_EVENT_SIZE = 64

_PATTERN = random.Random(0x5EED_2171).randbytes(64 * 1024)
_TEXT = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 16
_LAST_CHUNK = b"0\r\n\r\n"


class _Stream(NamedTuple):
    """A chunked response written piece by piece with a delay between pieces."""

    head: bytes
    chunks: tuple[bytes, ...]
    gap: float  # seconds


# --------------------------------------------------------------------------- responses


def _head(status: str, content_type: str, length: int | None, *extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}"]
    lines.extend(extra)
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _simple(status: str, body: bytes, *extra: str) -> bytes:
    return _head(status, "text/plain; charset=utf-8", len(body), *extra) + body


def _repeat(pattern: bytes, n: int) -> bytes:
    return (pattern * (n // len(pattern) + 1))[:n]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def _json_body(n: int) -> bytes:
    if n >= 11:  # len(b'{"data":""}') == 11
        return b'{"data":"' + _repeat(b"x", n - 11) + b'"}'
    if n >= 2:
        return b"{}" + b" " * (n - 2)  # trailing whitespace is valid JSON
    return b"0"[:n]


_NOT_FOUND = _simple("404 Not Found", b"not found\n")
_METHOD_NOT_ALLOWED = _simple("405 Method Not Allowed", b"method not allowed\n", "Allow: GET, POST")
_BAD_REQUEST_CLOSE = _simple("400 Bad Request", b"bad request\n", "Connection: close")
_TOO_LARGE_CLOSE = _simple(
    "431 Request Header Fields Too Large", b"request head too large\n", "Connection: close"
)
_NOT_IMPLEMENTED_CLOSE = _simple(
    "501 Not Implemented", b"chunked request bodies are not supported\n", "Connection: close"
)


class _BadParamError(ValueError):
    pass


def _param(params: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _BadParamError(f"{name} must be an integer") from None
    if not 0 <= value <= maximum:
        raise _BadParamError(f"{name} must be between 0 and {maximum}")
    return value


def _gap_param(params: dict[str, list[str]]) -> float:
    values = params.get("gap_ms")
    if not values:
        return 0.0
    try:
        value = float(values[-1])
    except ValueError:
        raise _BadParamError("gap_ms must be a number") from None
    if not 0.0 <= value <= _MAX_GAP_MS:  # also rejects NaN
        raise _BadParamError(f"gap_ms must be between 0 and {_MAX_GAP_MS:g}")
    return value / 1000.0


def _build(target: bytes) -> bytes | _Stream:
    """Build the response for a request target (path plus optional query)."""
    raw_path, _, raw_query = target.partition(b"?")
    path = raw_path.decode("latin-1")
    if path not in ("/bytes", "/json", "/chunked", "/sse"):
        return _NOT_FOUND
    params = parse_qs(raw_query.decode("latin-1"), keep_blank_values=True)
    try:
        if path == "/bytes":
            size = _param(params, "size", _DEFAULT_SIZE, _MAX_SIZE)
            return _head("200 OK", "application/octet-stream", size) + _repeat(_PATTERN, size)
        if path == "/json":
            size = _param(params, "size", _DEFAULT_SIZE, _MAX_SIZE)
            return _head("200 OK", "application/json", size) + _json_body(size)
        if path == "/chunked":
            size = _param(params, "size", _DEFAULT_SIZE, _MAX_SIZE)
            step = _param(params, "chunk", _DEFAULT_CHUNK, _MAX_SIZE) or max(size, 1)
            if -(-size // step) > _MAX_PIECES:
                raise _BadParamError(f"at most {_MAX_PIECES} chunks")
            body = _repeat(_PATTERN, size)
            parts = [_chunk(body[i : i + step]) for i in range(0, size, step)]
            head = _head("200 OK", "application/octet-stream", None)
            return head + b"".join(parts) + _LAST_CHUNK
        # /sse
        events = _param(params, "events", _DEFAULT_EVENTS, _MAX_PIECES)
        size = _param(params, "size", _DEFAULT_EVENT_SIZE, _MAX_SIZE)
        gap = _gap_param(params)
        if events * (size + 8) > _MAX_SIZE:
            raise _BadParamError(f"events * size must stay below {_MAX_SIZE}")
        head = _head("200 OK", "text/event-stream", None, "Cache-Control: no-cache")
        event = _chunk(b"data: " + _repeat(_TEXT, size) + b"\n\n")
        if gap > 0.0 and events > 1:
            return _Stream(head, (event,) * events, gap)
        return head + event * events + _LAST_CHUNK
    except _BadParamError as exc:
        return _simple("400 Bad Request", f"{exc}\n".encode())


class _ResponseCache(dict[bytes, "bytes | _Stream"]):
    """Responses by request target; ``get`` is the plain dict lookup on the hot path."""

    def __init__(self) -> None:
        super().__init__()
        self.nbytes = 0

    def build(self, target: bytes) -> bytes | _Stream:
        """Build the response for a cache miss and keep it while the budget allows."""
        response = _build(target)
        size = len(response) if isinstance(response, bytes) else sum(map(len, response.chunks))
        if len(self) < _CACHE_MAX_ENTRIES and self.nbytes + size <= _CACHE_MAX_BYTES:
            self[target] = response
            self.nbytes += size
        return response


_cache = _ResponseCache()


# --------------------------------------------------------------------------- protocol


# Input handling rules.  The common case (one whole request per read, nothing in flight) parses
# ``data`` in place and answers with a single ``transport.write`` of cached bytes, with no copies.
# Input is held in ``_buf`` (and reading is paused once it grows past _MAX_BUFFER) while a
# response cannot be answered yet: a delayed SSE stream is running (``_task``) or the transport's
# write buffer is full (``_write_paused``).  ``_resume`` replays the held input when both clear,
# so pipelined responses always go out in request order.  After a half-close (EOF) the held
# requests are still answered before the connection is closed.


class _HttpProtocol(asyncio.Protocol):
    """One keep-alive connection: parse pipelined requests, write cached responses."""

    __slots__ = (
        "_body_left",
        "_buf",
        "_closing",
        "_connections",
        "_eof",
        "_pending_keep_alive",
        "_pending_target",
        "_task",
        "_transport",
        "_write_paused",
    )

    def __init__(self, connections: set[_HttpProtocol]) -> None:
        self._transport: asyncio.Transport | None = None
        self._connections = connections
        self._buf = bytearray()  # unprocessed input, only used when input must wait
        self._body_left = 0  # request body bytes still to discard
        self._pending_target = b""  # request waiting for its body
        self._pending_keep_alive = True
        self._task: asyncio.Task[None] | None = None  # running delayed (SSE) stream
        self._write_paused = False
        self._closing = False  # decided to close: ignore further input
        self._eof = False  # peer half-closed: finish the backlog, then close

    # -- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._connections.discard(self)
        self._buf.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._task is None and self._transport is not None:
            asyncio.get_running_loop().call_soon(self._resume)

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._task is not None or self._write_paused:
            self._buf += data
            if len(self._buf) > _MAX_BUFFER and self._transport is not None:
                self._transport.pause_reading()
            return
        if self._buf:
            self._buf += data
            data = bytes(self._buf)
            self._buf.clear()
        self._process(data)

    def eof_received(self) -> bool | None:
        if self._task is None and not self._write_paused:
            return None  # nothing pending: the transport closes itself
        self._eof = True  # let the stream / pipelined backlog finish first (see _resume)
        return True

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- request handling

    def _resume(self) -> None:
        transport = self._transport
        if transport is None or self._task is not None or self._write_paused:
            return
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            self._process(data)
        if self._closing or self._task is not None or self._write_paused:
            return
        if self._eof:
            self._closing = True
            transport.close()
        else:
            transport.resume_reading()

    def _process(self, data: bytes) -> None:
        transport = self._transport
        if transport is None:
            return
        pos = 0
        end_of_data = len(data)
        while pos < end_of_data:
            if self._body_left:
                take = min(self._body_left, end_of_data - pos)
                pos += take
                self._body_left -= take
                if self._body_left:
                    return
                if not self._dispatch(self._pending_target, self._pending_keep_alive):
                    break
                continue
            head_end = data.find(b"\r\n\r\n", pos)
            if head_end < 0:
                if data.startswith(b"\r\n", pos):  # stray CRLF between requests
                    pos += 2
                    continue
                if end_of_data - pos > _MAX_HEADER:
                    self._fail(_TOO_LARGE_CLOSE)
                    return
                break
            if head_end - pos > _MAX_HEADER:
                self._fail(_TOO_LARGE_CLOSE)
                return
            line_end = data.find(b"\r\n", pos)
            if line_end == pos:  # stray CRLF between requests
                pos += 2
                continue
            parts = data[pos:line_end].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._fail(_BAD_REQUEST_CLOSE)
                return
            method, target, version = parts
            keep_alive = version != b"HTTP/1.0"
            length = 0
            if line_end < head_end:
                headers = data[line_end:head_end].lower()  # each header follows b"\r\n"
                if b"\r\ntransfer-encoding:" in headers:
                    self._fail(_NOT_IMPLEMENTED_CLOSE)
                    return
                index = headers.find(b"\r\ncontent-length:")
                if index >= 0:
                    value = _header_value(headers, index + 17)
                    if not value.isdigit():
                        self._fail(_BAD_REQUEST_CLOSE)
                        return
                    length = int(value)
                index = headers.find(b"\r\nconnection:")
                if index >= 0:
                    tokens = _header_value(headers, index + 13).replace(b" ", b"").split(b",")
                    if b"close" in tokens:
                        keep_alive = False
                    elif b"keep-alive" in tokens:
                        keep_alive = True
            pos = head_end + 4
            if method not in (b"GET", b"POST"):
                target = b""  # -> 405
            if length:
                self._body_left = length
                self._pending_target = target
                self._pending_keep_alive = keep_alive
                continue
            if not self._dispatch(target, keep_alive):
                break
        if pos < end_of_data and not self._closing:
            self._buf += memoryview(data)[pos:]
            if len(self._buf) > _MAX_BUFFER:
                transport.pause_reading()

    def _dispatch(self, target: bytes, keep_alive: bool) -> bool:
        """Answer one request; return False if input processing must stop for now."""
        transport = self._transport
        if transport is None:
            return False
        if not target:
            response: bytes | _Stream = _METHOD_NOT_ALLOWED
        else:
            cached = _cache.get(target)
            response = cached if cached is not None else _cache.build(target)
        if isinstance(response, bytes):
            transport.write(response)
            if not keep_alive:
                self._closing = True
                transport.close()
                return False
            return not self._write_paused
        if not keep_alive:
            self._closing = True
        self._task = asyncio.get_running_loop().create_task(self._stream(response))
        return False

    def _fail(self, response: bytes) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.write(response)
            self._transport.close()

    async def _stream(self, stream: _Stream) -> None:
        transport = self._transport
        assert transport is not None
        transport.write(stream.head + stream.chunks[0])
        for chunk in stream.chunks[1:]:
            await asyncio.sleep(stream.gap)
            if self._transport is None:
                return
            transport.write(chunk)
        transport.write(_LAST_CHUNK)
        self._task = None
        if self._closing:  # the request asked for "Connection: close"
            transport.close()
        else:
            self._resume()


def _header_value(headers: bytes, start: int) -> bytes:
    end = headers.find(b"\r\n", start)
    return (headers[start:] if end < 0 else headers[start:end]).strip()


# --------------------------------------------------------------------------- server process


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Stop the server when the parent closes our stdin (or dies)."""
    try:
        fd = sys.stdin.fileno()
        while os.read(fd, 4096):
            pass
    except (OSError, ValueError, AttributeError):
        pass
    with contextlib.suppress(RuntimeError):  # the loop is already closed
        loop.call_soon_threadsafe(stop.set)


async def _serve(port: int, exit_on_stdin_eof: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows
            loop.add_signal_handler(signum, stop.set)
    connections: set[_HttpProtocol] = set()
    server = await loop.create_server(
        lambda: _HttpProtocol(connections), HOST, port, backlog=1024, reuse_address=True
    )
    bound_port = server.sockets[0].getsockname()[1]
    gc.collect()
    gc.freeze()
    sys.stdout.write(f"PORT {bound_port}\n")
    sys.stdout.flush()
    if exit_on_stdin_eof:
        threading.Thread(
            target=_watch_stdin, args=(loop, stop), name="stdin-watch", daemon=True
        ).start()
    try:
        await stop.wait()
    finally:
        server.close()
        for protocol in list(connections):
            protocol.close()
        await asyncio.sleep(0)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark server until SIGTERM/SIGINT; print ``PORT <n>`` once listening."""
    parser = argparse.ArgumentParser(
        prog="python -m zltrace._cli.bench.server",
        description="Fast loopback HTTP/1.1 server for the zltrace benchmark.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin reaches end of file (used by BenchServer)",
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # SIGINT where no signal handler is possible
        asyncio.run(_serve(args.port, args.exit_on_stdin_eof))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
