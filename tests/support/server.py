"""Scripted loopback HTTP/1.1 server for tests: sends exactly the bytes a test scripts.

Raw sockets only (no http.server), so tests control chunk boundaries, pauses, graceful
closes and abrupt resets. Typical use::

    with ScriptedServer([response(200, b"hi")]) as srv:
        http.request("GET", srv.url + "/x")
        assert srv.requests[0].target == "/x"
"""

from __future__ import annotations

import contextlib
import gzip
import http
import itertools
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Union, final

__all__ = [
    "Reply",
    "Request",
    "ScriptedServer",
    "Step",
    "chunk_frame",
    "close",
    "gzip_bytes",
    "pause",
    "reset",
    "response",
    "send",
    "sse_response",
    "wait_for",
]

_MAX_HEAD = 64 * 1024
_POLL = 0.05
_TINY_PAUSE = 0.001

StepKind = Literal["send", "pause", "close", "reset", "wait"]


@dataclass(frozen=True)
class Step:
    """One scripted server action; build it with send/pause/close/reset/wait_for."""

    kind: StepKind
    data: bytes = b""
    seconds: float = 0.0
    event: threading.Event | None = None


def send(data: bytes) -> Step:
    """Send exactly these bytes with a single sendall() call."""
    return Step("send", data=bytes(data))


def pause(seconds: float) -> Step:
    """Sleep for the given number of seconds before the next step."""
    return Step("pause", seconds=float(seconds))


def close() -> Step:
    """Close the connection gracefully now (shutdown write side, then close)."""
    return Step("close")


def reset() -> Step:
    """Close the connection abruptly (SO_LINGER 0) so the client sees ECONNRESET."""
    return Step("reset")


def wait_for(event: threading.Event, timeout: float = 10) -> Step:
    """Block until the test sets the event (a timeout is recorded in server.errors)."""
    return Step("wait", seconds=float(timeout), event=event)


@dataclass(frozen=True)
class Request:
    """A request as received by the server, with both parsed and raw forms."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes
    raw_body: bytes
    connection_index: int
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """Return the first value of a header (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


# A runtime alias must use Union to import on Python 3.9.
Reply = Union[list[Step], Callable[[Request], list[Step]]]  # noqa: UP007, RUF100


class _ClientGone(Exception):
    """Internal: the peer closed the connection or the server is stopping."""


class _Conn:
    """Internal: buffered reader/writer around one accepted socket."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping
        self.buf = bytearray()

    def _fill(self) -> None:
        while True:
            if self.stopping.is_set():
                raise _ClientGone
            readable, _, _ = select.select([self.sock], [], [], _POLL)
            if readable:
                break
        data = self.sock.recv(65536)
        if not data:
            raise _ClientGone
        self.buf += data

    def read_until(self, delim: bytes, limit: int) -> bytes:
        """Return bytes up to and including delim."""
        start = 0
        while True:
            idx = self.buf.find(delim, start)
            if idx >= 0:
                end = idx + len(delim)
                out = bytes(self.buf[:end])
                del self.buf[:end]
                return out
            if len(self.buf) > limit:
                raise ValueError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            self._fill()

    def read_exact(self, n: int) -> bytes:
        """Return exactly n bytes."""
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _parse_header_lines(lines: list[bytes]) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for raw in lines:
        line = raw.decode("latin-1")
        if line[:1] in (" ", "\t") and headers:  # obsolete line folding
            name, value = headers[-1]
            headers[-1] = (name, (value + " " + line.strip()).strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed header line: {line!r}")
        headers.append((name.strip(), value.strip()))
    return headers


def _read_request(conn: _Conn, index: int) -> Request:
    # RFC 9112 2.2: ignore empty lines received before the request line.
    while True:
        while len(conn.buf) < 2:
            conn._fill()
        if conn.buf.startswith(b"\r\n"):
            del conn.buf[:2]
        elif conn.buf.startswith(b"\n"):
            del conn.buf[:1]
        else:
            break
    raw_head = conn.read_until(b"\r\n\r\n", _MAX_HEAD)
    lines = raw_head[:-4].split(b"\r\n")
    parts = lines[0].decode("latin-1").split(" ", 2)
    if len(parts) != 3:
        raise ValueError(f"malformed request line: {lines[0]!r}")
    method, target, version = parts
    headers = _parse_header_lines(lines[1:])

    te = ",".join(v for k, v in headers if k.lower() == "transfer-encoding")
    codings = [c.strip().lower() for c in te.split(",") if c.strip()]
    trailers: list[tuple[str, str]] = []
    if codings and codings[-1] == "chunked":
        raw = bytearray()
        body = bytearray()
        while True:
            size_line = conn.read_until(b"\r\n", _MAX_HEAD)
            raw += size_line
            size = int(size_line[:-2].split(b";", 1)[0].strip(), 16)
            if size == 0:
                trailer_lines: list[bytes] = []
                while True:
                    line = conn.read_until(b"\r\n", _MAX_HEAD)
                    raw += line
                    if line == b"\r\n":
                        break
                    trailer_lines.append(line[:-2])
                trailers = _parse_header_lines(trailer_lines)
                break
            data = conn.read_exact(size + 2)
            if not data.endswith(b"\r\n"):
                raise ValueError("chunk data not followed by CRLF")
            raw += data
            body += data[:-2]
        raw_body, body_bytes = bytes(raw), bytes(body)
    else:
        length = next((v for k, v in headers if k.lower() == "content-length"), None)
        raw_body = conn.read_exact(int(length)) if length is not None else b""
        body_bytes = raw_body
    return Request(
        method=method,
        target=target,
        version=version,
        headers=headers,
        raw_head=raw_head,
        body=body_bytes,
        raw_body=raw_body,
        connection_index=index,
        trailers=trailers,
    )


@final
class ScriptedServer:
    """Context manager. Listens on 127.0.0.1 port 0 in a daemon thread; one thread per connection.

    ``replies`` is either a sequence consumed in order (the i-th request overall gets
    ``replies[i]``; once exhausted the last reply is reused) or one callable for every request.
    A reply is a list of steps or a callable ``Request -> list[Step]``.
    """

    host: str
    port: int

    def __init__(
        self,
        replies: Sequence[Reply] | Callable[[Request], list[Step]],
        *,
        keep_alive: bool = True,
    ) -> None:
        if not callable(replies) and len(replies) == 0:
            raise ValueError("replies must not be empty")
        self._replies = replies
        self.keep_alive = keep_alive
        self.host = "127.0.0.1"
        self.port = 0
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self._connections = 0
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Number of accepted connections so far."""
        with self._cond:
            return self._connections

    def start(self) -> None:
        """Bind, listen and start the accept thread (called by __enter__)."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((self.host, 0))
            listener.listen(128)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"ScriptedServer:{self.port}", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        """Close the listener and all connections, then join threads (5 s overall)."""
        self._stopping.set()
        with self._cond:
            for sock in self._socks:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        deadline = time.monotonic() + 5.0
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            leftovers = list(self._socks)
            self._socks.clear()
        for sock in leftovers:
            sock.close()
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def wait_requests(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least n requests were received, else raise TimeoutError."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self.requests)}")

    # -- internals -------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._stopping.is_set():
                readable, _, _ = select.select([listener], [], [], _POLL)
                if not readable:
                    continue
                try:
                    sock, _addr = listener.accept()
                except OSError:
                    continue
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with self._cond:
                    if self._stopping.is_set():
                        sock.close()
                        break
                    index = self._connections
                    self._connections += 1
                    self._socks.add(sock)
                    thread = threading.Thread(
                        target=self._serve,
                        args=(sock, index),
                        name=f"ScriptedServer:{self.port}:conn{index}",
                        daemon=True,
                    )
                    self._threads.append(thread)
                thread.start()
        except Exception as exc:  # noqa: BLE001, RUF100  # pragma: no cover
            self.errors.append(exc)
        finally:
            listener.close()

    def _steps_for(self, request: Request, number: int) -> list[Step]:
        replies = self._replies
        if callable(replies):
            reply: Reply = replies
        else:
            reply = replies[min(number, len(replies) - 1)]
        steps = reply(request) if callable(reply) else reply
        return list(steps)

    def _forget(self, sock: socket.socket) -> bool:
        with self._cond:
            if sock not in self._socks:
                return False
            self._socks.discard(sock)
            return True

    def _graceful_close(self, sock: socket.socket) -> None:
        if not self._forget(sock):
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            # Drain what the client already sent so close() does not turn into an RST.
            sock.setblocking(False)
            while sock.recv(65536):
                pass
        except OSError:
            pass
        finally:
            sock.close()

    def _reset(self, sock: socket.socket) -> None:
        if not self._forget(sock):
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        finally:
            sock.close()

    def _run_steps(self, sock: socket.socket, steps: list[Step]) -> bool:
        """Run steps; return True if the connection is still open afterwards."""
        for step in steps:
            if step.kind == "send":
                sock.sendall(step.data)
            elif step.kind == "pause":
                if self._stopping.wait(step.seconds):
                    raise _ClientGone
            elif step.kind == "close":
                self._graceful_close(sock)
                return False
            elif step.kind == "reset":
                self._reset(sock)
                return False
            elif step.kind == "wait":
                assert step.event is not None
                deadline = time.monotonic() + step.seconds
                while not step.event.wait(min(_POLL, max(0.0, deadline - time.monotonic()))):
                    if self._stopping.is_set():
                        raise _ClientGone
                    if time.monotonic() >= deadline:
                        self.errors.append(
                            TimeoutError(f"wait_for step timed out after {step.seconds} s")
                        )
                        break
            else:  # pragma: no cover - Step is sealed
                raise ValueError(f"unknown step kind {step.kind!r}")
        return True

    def _serve(self, sock: socket.socket, index: int) -> None:
        conn = _Conn(sock, self._stopping)
        try:
            while True:
                request = _read_request(conn, index)
                with self._cond:
                    number = len(self.requests)
                    self.requests.append(request)
                    self._cond.notify_all()
                steps = self._steps_for(request, number)
                if not self._run_steps(sock, steps):
                    return
                if not self.keep_alive:
                    break
        except (_ClientGone, OSError):
            pass
        except Exception as exc:  # noqa: BLE001, RUF100 - reported via self.errors
            self.errors.append(exc)
        self._graceful_close(sock)


def accept_each(listener: socket.socket, handle: Callable[[socket.socket], None]) -> None:
    """Serve each connection ``listener`` accepts with ``handle`` on a daemon thread of its
    own, until the listener is closed (for tests' special-purpose servers)."""

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()


# -- convenience builders ------------------------------------------------------------------


class Routes:
    """Step lists registered under fresh paths, served by one keep-alive :class:`ScriptedServer`
    (one per test module: cases register a route each instead of starting a server each)."""

    def __init__(self, prefix: str = "/case/") -> None:
        self._steps: dict[str, list[Step]] = {}
        self._ids = itertools.count(1)
        self._prefix = prefix

    def route(self, steps: list[Step]) -> str:
        """Register ``steps`` under a fresh path and return the path."""
        path = f"{self._prefix}{next(self._ids)}"
        self._steps[path] = steps
        return path

    def reply(self, req: Request) -> list[Step]:
        steps = self._steps.get(req.target)
        if steps is None:
            return [send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")]
        return steps

    @contextlib.contextmanager
    def serve(self) -> Iterator[ScriptedServer]:
        """The server; on exit, fails if it saw errors of its own."""
        with ScriptedServer(self.reply) as s:
            yield s
        assert not s.errors, s.errors


def gzip_bytes(data: bytes) -> bytes:
    """Gzip-compress data deterministically (mtime 0)."""
    return gzip.compress(data, mtime=0)


def chunk_frame(data: bytes) -> bytes:
    """Frame data as one HTTP/1.1 chunk (``b""`` gives the terminating ``0\\r\\n\\r\\n``)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _split(body: bytes, chunk_sizes: Sequence[int] | None) -> list[bytes]:
    if chunk_sizes is None:
        return [body] if body else []
    if not chunk_sizes or any(size <= 0 for size in chunk_sizes):
        raise ValueError("chunk_sizes must be a non-empty sequence of positive ints")
    pieces: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(body):
        size = chunk_sizes[i % len(chunk_sizes)]
        pieces.append(body[pos : pos + size])
        pos += size
        i += 1
    return pieces


def _head(status: int, reason: str | None, headers: Sequence[tuple[str, str]]) -> bytes:
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _has(headers: Sequence[tuple[str, str]], name: str) -> bool:
    return any(key.lower() == name for key, _ in headers)


def _with_pauses(pieces: list[bytes]) -> list[Step]:
    steps: list[Step] = []
    for piece in pieces:
        if steps:
            steps.append(pause(_TINY_PAUSE))
        steps.append(send(piece))
    return steps


def response(
    status: int = 200,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    *,
    reason: str | None = None,
    chunk_sizes: Sequence[int] | None = None,
    framing: str = "length",
) -> list[Step]:
    """Build steps for a response framed by "length", "chunked" or "close"."""
    if framing not in ("length", "chunked", "close"):
        raise ValueError(f"unknown framing {framing!r}")
    hdrs = list(headers)
    no_body = status in (204, 304) or 100 <= status < 200
    if no_body:
        steps = [send(_head(status, reason, hdrs))]
        if framing == "close":
            steps.append(close())
        return steps

    pieces = _split(body, chunk_sizes)
    if framing == "length":
        if not _has(hdrs, "content-length"):
            hdrs.append(("Content-Length", str(len(body))))
        head = _head(status, reason, hdrs)
        if chunk_sizes is None:
            return [send(head + body)]
        return _with_pauses([head, *pieces])
    if framing == "chunked":
        if not _has(hdrs, "transfer-encoding"):
            hdrs.append(("Transfer-Encoding", "chunked"))
        frames = [chunk_frame(piece) for piece in pieces] + [chunk_frame(b"")]
        return _with_pauses([_head(status, reason, hdrs), *frames])
    # framing == "close"
    return [*_with_pauses([_head(status, reason, hdrs), *pieces]), close()]


def sse_response(
    events: Sequence[bytes],
    *,
    gap: float = 0.0,
    headers: Sequence[tuple[str, str]] = (),
) -> list[Step]:
    """Build a chunked text/event-stream response, one chunk per event, gap seconds apart."""
    hdrs = list(headers)
    if not _has(hdrs, "content-type"):
        hdrs.append(("Content-Type", "text/event-stream"))
    if not _has(hdrs, "transfer-encoding"):
        hdrs.append(("Transfer-Encoding", "chunked"))
    steps: list[Step] = [send(_head(200, None, hdrs))]
    for event in events:
        if not event:
            raise ValueError("SSE events must be non-empty (an empty chunk ends the body)")
        steps.append(pause(gap if gap > 0 else _TINY_PAUSE))
        steps.append(send(chunk_frame(event)))
    steps.append(pause(gap if gap > 0 else _TINY_PAUSE))
    steps.append(send(chunk_frame(b"")))
    return steps


# -- self-test -----------------------------------------------------------------------------


def _recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return data


def _self_test() -> None:
    # 1) chunked response, then a reset on the same keep-alive connection.
    replies: list[Reply] = [
        response(200, b"hello world", [("X-A", "1")], framing="chunked", chunk_sizes=[5]),
        [reset()],
    ]
    with ScriptedServer(replies) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as cli:
            cli.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n")
            got = _recv_until(cli, b"0\r\n\r\n")
            expected = (
                b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n5\r\n worl\r\n1\r\nd\r\n0\r\n\r\n"
            )
            assert got == expected, got
            cli.sendall(
                b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: t\r\n\r\n"
            )
            try:
                leftover = cli.recv(100)
            except ConnectionResetError:
                leftover = b"<reset>"
            assert leftover == b"<reset>", leftover
        srv.wait_requests(2)
        first, second = srv.requests
        assert first.headers == [("Host", "x"), ("X-Dup", "1"), ("X-Dup", "2")], first.headers
        assert first.raw_head.endswith(b"X-Dup: 2\r\n\r\n")
        assert second.method == "POST" and second.body == b"abcde", second
        assert second.raw_body.startswith(b"3;ext=1\r\nabc"), second.raw_body
        assert second.trailers == [("X-T", "t")], second.trailers
        assert srv.connections == 1 and not srv.errors, srv.errors

    # 2) Content-Length body, callable reply, keep_alive=False, graceful close.
    def echo(req: Request) -> list[Step]:
        return response(201, req.body[::-1], [("Connection", "close")])

    with ScriptedServer(echo, keep_alive=False) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as cli:
            cli.sendall(b"PUT /c HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz")
            got = _recv_until(cli, b"\x00never")
        assert got == (
            b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 3\r\n\r\nzyx"
        ), got
        assert srv.requests[0].body == b"xyz" and not srv.errors, srv.errors

    # 3) wait_for holds the body until the test releases it; gzip helper round-trips.
    gate = threading.Event()
    steps = [send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"), wait_for(gate), send(b"ok")]
    with ScriptedServer([steps]) as srv:
        with socket.create_connection((srv.host, srv.port), timeout=5) as cli:
            cli.sendall(b"GET / HTTP/1.1\r\n\r\n")
            head = _recv_until(cli, b"\r\n\r\n")
            assert head.endswith(b"\r\n\r\n") and b"ok" not in head, head
            gate.set()
            assert _recv_until(cli, b"ok").endswith(b"ok")
        assert not srv.errors, srv.errors
    assert gzip.decompress(gzip_bytes(b"data")) == b"data"
    print("tests/_server.py self-test: OK")


if __name__ == "__main__":
    _self_test()
