"""Pins the private urllib3 / http.client behaviour zltrace is built on, on the installed versions.

zltrace hooks four seams (see zltrace/_capture/tee.py, connection.py, pool.py): the connection's
``response_class`` (instantiated by ``getresponse``), ``HTTPResponse.begin`` (after which it
swaps ``fp`` for a tee), the socket file's read/read1/readinto/readline (every read path,
``read_chunked`` included, ends there), and the pool / manager factories (``_new_conn`` with
``ConnectionCls``, ``_make_request`` once per attempt, ``_new_pool`` with
``pool_classes_by_scheme``, and pool ``__init__`` parameters readable back as attributes).
If a urllib3 or CPython release changes one of these, a test here fails first and names it.
"""

from __future__ import annotations

import functools
import http.client
import inspect
import io
import itertools
import socket
import ssl
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import urllib3
import urllib3.connection
import urllib3.poolmanager
from support.server import (
    ScriptedServer,
    Step,
    chunk_frame,
    close,
    pause,
    reset,
    send,
    sse_response,
)
from support.trace import records
from urllib3.poolmanager import ProxyConfig
from urllib3.util import Retry, Timeout, parse_url

import zltrace

HAS_READ1 = hasattr(urllib3.response.HTTPResponse, "read1")

# -- one loopback server for the module; each path gets its own scripted replies --------------

_routes: dict[str, list[list[Step]]] = {}
_hits: dict[str, int] = {}
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def srv() -> Iterator[ScriptedServer]:
    """A keep-alive server: a path's n-th request gets the n-th reply registered for it."""

    def reply(req: Any) -> list[Step]:
        path = req.target.split("?", 1)[0]
        replies = _routes.get(path)
        if replies is None:
            return [send(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")]
        n = _hits.get(path, 0)
        _hits[path] = n + 1
        return replies[min(n, len(replies) - 1)]

    with ScriptedServer(reply) as s:
        yield s
    assert not s.errors, s.errors


def route(*replies: list[Step]) -> str:
    """Register replies (used in order, the last one repeats) under a fresh path."""
    path = f"/pin/{next(_ids)}"
    _routes[path] = list(replies)
    return path


def head(status: int = 200, *headers: tuple[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} X", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def ok(body: bytes) -> list[Step]:
    return [send(head(200, ("Content-Length", str(len(body)))) + body)]


# -- a recorder for the socket file (what the tee stands in for) ------------------------------

DATA_METHODS = ("read", "read1", "readinto", "readline")


class RecordingFp:
    """Forwards to the real socket file; logs the bytes each data method returned.

    Any attribute reached through ``__getattr__`` (i.e. not one of the methods the tee
    defines itself) is logged in ``other`` so a test can prove nothing else is used.
    """

    def __init__(self, raw: Any, log: list[tuple[str, bytes]], other: list[str]) -> None:
        self._raw = raw
        self._log = log
        self._other = other

    def read(self, amt: int | None = None) -> bytes:
        data: bytes = self._raw.read(amt)
        self._log.append(("read", data))
        return data

    def read1(self, n: int = -1) -> bytes:
        data: bytes = self._raw.read1(n)
        self._log.append(("read1", data))
        return data

    def readinto(self, b: Any) -> int | None:
        n: int | None = self._raw.readinto(b)
        with memoryview(b) as view:
            self._log.append(("readinto", view[: n or 0].tobytes()))
        return n

    def readline(self, limit: int = -1) -> bytes:
        data: bytes = self._raw.readline(limit)
        self._log.append(("readline", data))
        return data

    def peek(self, n: int = 0) -> bytes:
        data: bytes = self._raw.peek(n)
        return data

    def close(self) -> None:
        self._raw.close()

    @property
    def closed(self) -> bool:
        return bool(self._raw.closed)

    def fileno(self) -> int:
        return int(self._raw.fileno())

    def flush(self) -> None:
        self._raw.flush()

    def __getattr__(self, name: str) -> Any:
        self._other.append(name)
        return getattr(self._raw, name)


class RecordingResponse(http.client.HTTPResponse):
    """Swaps ``fp`` for a :class:`RecordingFp` right after ``begin()``, as TracedResponse does."""

    def __init__(
        self, log: list[tuple[str, bytes]], other: list[str], sock: Any, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(sock, *args, **kwargs)
        self._rec = (log, other)

    def begin(self) -> None:
        super().begin()
        self.fp = RecordingFp(self.fp, *self._rec)  # type: ignore[assignment]


def recording_pool(
    srv: ScriptedServer,
) -> tuple[urllib3.HTTPConnectionPool, list[tuple[str, bytes]], list[str]]:
    """A pool whose connections' responses read through a RecordingFp."""
    log: list[tuple[str, bytes]] = []
    other: list[str] = []

    class RecordingConnection(urllib3.connection.HTTPConnection):
        @property
        def response_class(self) -> Any:
            return functools.partial(RecordingResponse, log, other)

    pool = urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30)
    pool.ConnectionCls = RecordingConnection
    return pool, log, other


# -- http.client: getresponse() and response_class ---------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
def test_http_client_getresponse_instantiates_instance_response_class(
    srv: ScriptedServer, method: str
) -> None:
    """http.client getresponse() calls self.response_class(self.sock, method=self._method)."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any], Any]] = []

    class Conn(http.client.HTTPConnection):
        @property
        def response_class(self) -> Any:  # looked up on the instance, not the class
            def factory(*args: Any, **kwargs: Any) -> http.client.HTTPResponse:
                calls.append((args, kwargs, self.sock))
                return http.client.HTTPResponse(*args, **kwargs)

            return factory

    path = route([send(head(200, ("Content-Length", "0")))])
    conn = Conn(srv.host, srv.port, timeout=10)
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None)
        resp = conn.getresponse()
        assert resp.read() == b""
        resp.close()
    finally:
        conn.close()
    assert len(calls) == 1
    args, kwargs, sock = calls[0]
    assert len(args) == 1 and args[0] is sock
    assert kwargs == {"method": method}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_urllib3_connection_getresponse_uses_response_class(
    srv: ScriptedServer, method: str
) -> None:
    """urllib3's connection builds its http.client response via self.response_class, once."""
    made: list[tuple[str, Any]] = []

    class Conn(urllib3.connection.HTTPConnection):
        @property
        def response_class(self) -> Any:
            def factory(sock: Any, *args: Any, **kwargs: Any) -> http.client.HTTPResponse:
                made.append((kwargs.get("method"), sock))
                return http.client.HTTPResponse(sock, *args, **kwargs)

            return factory

    path = route(ok(b"") if method == "HEAD" else ok(b"hello"))
    pool = urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=10)
    pool.ConnectionCls = Conn
    try:
        for _ in range(2):
            r = pool.request(method, path)
            assert r.status == 200
    finally:
        pool.close()
    assert [m for m, _ in made] == [method, method]
    assert all(isinstance(s, socket.socket) for _, s in made)


# -- http.client: begin() ---------------------------------------------------------------------

BEGIN_CASES: dict[str, tuple[str, bytes, bool, int | None, bytes]] = {
    # name: (method, head+body sent, chunked, length after begin, body)
    "length": ("GET", head(200, ("Content-Length", "5")) + b"hello", False, 5, b"hello"),
    "chunked": (
        "GET",
        head(200, ("Transfer-Encoding", "chunked")) + chunk_frame(b"hello") + chunk_frame(b""),
        True,
        None,
        b"hello",
    ),
    "close": ("GET", head(200, ("Connection", "close")) + b"hello", False, None, b"hello"),
    "head": ("HEAD", head(200, ("Content-Length", "5")), False, 0, b""),
    "head-chunked": ("HEAD", head(200, ("Transfer-Encoding", "chunked")), True, 0, b""),
    "204": ("GET", head(204), False, 0, b""),
    "304": ("GET", head(304, ("Content-Length", "5")), False, 0, b""),
}


@pytest.mark.parametrize("case", list(BEGIN_CASES))
def test_begin_sets_fp_chunked_length_method(srv: ScriptedServer, case: str) -> None:
    """HTTPResponse.begin() parses the head; then fp/chunked/length/_method are as zltrace reads."""
    method, wire, chunked, length, body = BEGIN_CASES[case]
    steps = [send(wire)] + ([close()] if case == "close" else [])
    path = route(steps)
    assert callable(getattr(http.client.HTTPResponse, "begin", None))
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: pin\r\n\r\n".encode())
        resp = http.client.HTTPResponse(sock, method=method)
        assert resp.status is http.client._UNKNOWN  # type: ignore[attr-defined]
        fp_before = resp.fp
        resp.begin()
        try:
            assert resp.fp is fp_before  # begin() leaves the socket file in place ...
            assert isinstance(resp.fp, io.BufferedReader)  # ... a blocking buffered reader
            for name in DATA_METHODS:
                assert callable(getattr(resp.fp, name))
            assert resp._method == method  # type: ignore[attr-defined]
            assert resp.chunked is chunked
            assert resp.length == length
            assert resp.read() == body
        finally:
            resp.close()


def test_fp_swapped_after_begin_serves_every_read(srv: ScriptedServer) -> None:
    """After begin(), http.client reads the body only through the fp attribute (swappable)."""
    body = b"line one\nline two\n" * 100
    wire = (
        head(200, ("Transfer-Encoding", "chunked"))
        + b"".join(chunk_frame(body[i : i + 37]) for i in range(0, len(body), 37))
        + chunk_frame(b"")
    )
    path = route([send(wire)])
    log: list[tuple[str, bytes]] = []
    other: list[str] = []
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pin\r\n\r\n".encode())
        resp = RecordingResponse(log, other, sock, method="GET")
        resp.begin()
        try:
            got = resp.readline() + resp.read(5) + resp.read1(100)
            buf = bytearray(50)
            n = resp.readinto(buf)
            got += bytes(buf[:n]) + resp.read()
        finally:
            resp.close()
    assert got == body
    assert b"".join(d for _, d in log) == wire[wire.index(b"\r\n\r\n") + 4 :]
    assert other == []


@pytest.mark.parametrize("split", [64, 256, 1000])
def test_socket_file_read_and_readinto_return_short_only_at_eof(
    srv: ScriptedServer, split: int
) -> None:
    """The blocking socket file fills read(n)/readinto(b) fully unless the stream ended."""
    body = bytes(range(256)) * 8
    steps: list[Step] = [send(head(200, ("Connection", "close")))]
    for i in range(0, len(body), split):
        steps += [send(body[i : i + split]), pause(0.001)]
    path = route([*steps, close()])
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: pin\r\n\r\n".encode())
        resp = http.client.HTTPResponse(sock, method="GET")
        resp.begin()
        fp = resp.fp
        try:
            assert fp.read(700) == body[:700]
            buf = bytearray(900)
            assert fp.readinto(buf) == 900 and bytes(buf) == body[700:1600]
            rest = fp.read(10_000)
            assert rest == body[1600:]  # short: the server closed
        finally:
            resp.close()


# -- every read path ends in the four socket-file methods -----------------------------------


def _loop(r: Any, read: Callable[[], bytes]) -> bytes:
    out = bytearray()
    for _ in range(100_000):
        data = read()
        out += data
        if not data and r.closed:
            return bytes(out)
    raise AssertionError("read loop did not end")


def _readinto(r: Any) -> bytes:
    buf = bytearray(29)

    def one() -> bytes:
        n = r.readinto(buf)
        return bytes(buf[:n])

    return _loop(r, one)


def _buffered(r: Any) -> bytes:
    r.auto_close = False
    reader = io.BufferedReader(r, 64)
    data = reader.read()
    reader.close()
    return data


READERS: dict[str, tuple[bool, Callable[[Any], bytes | None]]] = {
    "preload": (True, lambda r: r.data),
    "data": (False, lambda r: r.data),
    "read": (False, lambda r: r.read()),
    "read_amt": (False, lambda r: _loop(r, lambda: r.read(9))),
    "read1": (False, lambda r: _loop(r, lambda: r.read1(40))),
    "readinto": (False, _readinto),
    "stream": (False, lambda r: b"".join(r.stream(17))),
    "read_chunked": (False, lambda r: b"".join(r.read_chunked(5))),
    "lines": (False, lambda r: b"".join(r)),
    "drain_conn": (False, lambda r: r.drain_conn()),
    "buffered_reader": (False, _buffered),
}


def _reader_params() -> Iterator[Any]:
    for framing in ("length", "chunked", "close"):
        for name in READERS:
            if name == "read_chunked" and framing != "chunked":
                continue
            marks = []
            if name == "read1" and not HAS_READ1:
                marks.append(
                    pytest.mark.skip(
                        reason=f"urllib3 {urllib3.__version__} has no HTTPResponse.read1()"
                    )
                )
            yield pytest.param(framing, name, marks=marks, id=f"{framing}-{name}")


@pytest.mark.parametrize(("framing", "reader"), list(_reader_params()))
def test_every_read_path_reads_through_the_four_fp_methods(
    srv: ScriptedServer, framing: str, reader: str
) -> None:
    """Every read path pulls each body byte (with framing) via fp read/read1/readinto/readline."""
    body = b"".join(b"%04d pinned body line\n" % i for i in range(120))
    if framing == "length":
        wire_body = body
        steps = [send(head(200, ("Content-Length", str(len(body))))), pause(0.001), send(body)]
    elif framing == "chunked":
        wire_body = b"".join(
            chunk_frame(body[i : i + 100]) for i in range(0, len(body), 100)
        ) + chunk_frame(b"")
        steps = [send(head(200, ("Transfer-Encoding", "chunked")) + wire_body)]
    else:
        wire_body = body
        steps = [send(head(200, ("Connection", "close"))), send(body), close()]
    path = route(steps)
    pool, log, other = recording_pool(srv)
    preload, fn = READERS[reader]
    try:
        r = pool.request("GET", path, preload_content=preload)
        got = fn(r)
        r.release_conn()
    finally:
        pool.close()
    if reader != "drain_conn":
        assert got == body
    assert {name for name, _ in log} <= set(DATA_METHODS)
    assert b"".join(data for _, data in log) == wire_body
    assert other == [], f"socket-file attributes used beyond the tee's own: {other}"


def test_read_chunked_reads_size_lines_through_fp_readline(srv: ScriptedServer) -> None:
    """urllib3 read_chunked() reads each chunk-size line with fp.readline (not via _fp_read)."""
    events = [b"data: %d\n\n" % i for i in range(5)]
    path = route(sse_response(events))
    pool, log, _ = recording_pool(srv)
    try:
        r = pool.request("GET", path, preload_content=False)
        got = list(r.read_chunked())
        r.release_conn()
    finally:
        pool.close()
    assert b"".join(got) == b"".join(events)
    size_lines = [d for name, d in log if name == "readline"]
    for ev in events:
        assert b"%x\r\n" % len(ev) in size_lines
    assert b"0\r\n" in size_lines and b"\r\n" in size_lines  # last chunk and end of trailers


def test_read_chunked_sse_stream_is_captured(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """An SSE stream consumed through read_chunked() is captured whole by the tee."""
    events = [b'event: delta\ndata: {"i": %d}\n\n' % i for i in range(8)]
    path = route(sse_response(events))
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30), tracer=tracer
    )
    try:
        r = pool.request("GET", path, preload_content=False)
        got = [bytes(c) for c in r.read_chunked()]
        r.release_conn()
    finally:
        pool.close()
    assert b"".join(got) == b"".join(events)
    (ex,) = records(tracer)
    assert ex.outcome == "complete"
    assert ex.response is not None
    assert ex.response.framing == "chunked"
    assert ex.response.raw_body == b"".join(events)
    assert [end for end, _ in ex.response.reads][-1] == len(ex.response.raw_body)


# -- connection: putrequest / send ----------------------------------------------------------


def test_connection_send_sees_exact_request_bytes(srv: ScriptedServer) -> None:
    """Everything urllib3 puts on the wire (head, body, chunk framing) goes through conn.send()."""
    sent: list[bytes] = []
    starts: list[tuple[str, str]] = []

    class Conn(urllib3.connection.HTTPConnection):
        def putrequest(self, method: str, url: str, *a: Any, **kw: Any) -> None:
            starts.append((method, url))
            super().putrequest(method, url, *a, **kw)

        def send(self, data: Any) -> None:
            sent.append(bytes(data))
            super().send(data)

    p1 = route(ok(b"a"))
    p2 = route(ok(b"b"))
    pool = urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=10)
    pool.ConnectionCls = Conn
    before = len(srv.requests)
    try:
        pool.request("POST", p1, body=b"payload", headers={"X-Pin": "1"})
        pool.urlopen("PUT", p2, body=(c for c in [b"gen", b"", b"erator"]), chunked=True)
    finally:
        pool.close()
    srv.wait_requests(before + 2)
    got = [r for r in srv.requests if r.target in (p1, p2)]
    assert starts == [("POST", p1), ("PUT", p2)]
    assert b"".join(sent) == b"".join(r.raw_head + r.raw_body for r in got)
    assert got[1].body == b"generator"


# -- pools: _make_request, _new_conn -------------------------------------------------------


class CountingPool(urllib3.HTTPConnectionPool):
    """Records every _make_request call (and what it raised)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[Any, str, str]] = []
        self.raised: list[BaseException] = []
        self.new_conns = 0

    def _new_conn(self) -> Any:
        self.new_conns += 1
        return super()._new_conn()

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((conn, method, url))
        try:
            return super()._make_request(conn, method, url, *args, **kwargs)
        except BaseException as exc:
            self.raised.append(exc)
            raise


def test_make_request_signature() -> None:
    """HTTPConnectionPool._make_request(self, conn, method, url, ...) exists with that order."""
    params = list(inspect.signature(urllib3.HTTPConnectionPool._make_request).parameters)
    assert params[:4] == ["self", "conn", "method", "url"]
    new_conn = inspect.signature(urllib3.HTTPConnectionPool._new_conn).parameters
    assert list(new_conn) == ["self"]


def test_make_request_called_once_per_status_retry(srv: ScriptedServer) -> None:
    """urlopen calls _make_request once per attempt: a 503 retried once gives two calls."""
    path = route([send(head(503, ("Content-Length", "4")) + b"busy")], ok(b"fine"))
    pool = CountingPool(
        srv.host,
        srv.port,
        timeout=10,
        retries=Retry(total=3, status_forcelist=[503], backoff_factor=0),
    )
    try:
        r = pool.request("GET", path)
        assert (r.status, r.data) == (200, b"fine")
    finally:
        pool.close()
    assert [(m, u) for _, m, u in pool.calls] == [("GET", path), ("GET", path)]
    assert all(isinstance(c, pool.ConnectionCls) for c, _, _ in pool.calls)


def test_make_request_called_once_per_redirect_hop(srv: ScriptedServer) -> None:
    """A pool-level redirect is a second urlopen, hence a second _make_request call."""
    target = route(ok(b"landed"))
    path = route([send(head(302, ("Location", target), ("Content-Length", "0")))])
    pool = CountingPool(srv.host, srv.port, timeout=10, retries=Retry(total=3))
    try:
        r = pool.request("GET", path)
        assert (r.status, r.data) == (200, b"landed")
    finally:
        pool.close()
    assert [(m, u) for _, m, u in pool.calls] == [("GET", path), ("GET", target)]


def test_make_request_raises_what_the_request_raised(srv: ScriptedServer) -> None:
    """A connection reset before the response surfaces as an exception out of _make_request."""
    path = route([reset()])
    pool = CountingPool(srv.host, srv.port, timeout=10, retries=False)
    try:
        with pytest.raises(urllib3.exceptions.HTTPError):
            pool.request("GET", path)
    finally:
        pool.close()
    assert len(pool.calls) == 1
    assert len(pool.raised) == 1


def test_new_conn_uses_connection_cls(srv: ScriptedServer) -> None:
    """_new_conn() builds self.ConnectionCls (class or instance attribute), once per new socket."""

    class ClassConn(urllib3.connection.HTTPConnection):
        pass

    class InstanceConn(urllib3.connection.HTTPConnection):
        pass

    class PoolWithCls(CountingPool):
        ConnectionCls = ClassConn

    pool = PoolWithCls(srv.host, srv.port, timeout=10, retries=False, maxsize=1)
    try:
        conn = pool._new_conn()
        assert type(conn) is ClassConn
        conn.close()
        pool.ConnectionCls = InstanceConn
        pool.new_conns = 0
        path = route(ok(b"x"))
        for _ in range(3):
            assert pool.request("GET", path).data == b"x"
        assert pool.new_conns == 1  # kept alive and reused
        assert all(type(c) is InstanceConn for c, _, _ in pool.calls)
    finally:
        pool.close()


# -- PoolManager._new_pool and pool_classes_by_scheme ----------------------------------------


def test_pool_manager_new_pool_uses_pool_classes_by_scheme(srv: ScriptedServer) -> None:
    """PoolManager._new_pool picks the pool class from self.pool_classes_by_scheme."""
    params = list(inspect.signature(urllib3.PoolManager._new_pool).parameters)
    assert params[:4] == ["self", "scheme", "host", "port"]

    pm = urllib3.PoolManager()
    other = urllib3.PoolManager()
    proxy = urllib3.ProxyManager("http://127.0.0.1:9")
    # The module-level dict is shared, not copied: zltrace must give a manager its own.
    assert pm.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme
    assert other.pool_classes_by_scheme is pm.pool_classes_by_scheme
    assert proxy.pool_classes_by_scheme is pm.pool_classes_by_scheme

    pm.pool_classes_by_scheme = {"http": CountingPool, "https": urllib3.HTTPSConnectionPool}
    path = route(ok(b"via manager"))
    try:
        assert pm.request("GET", srv.url + path).data == b"via manager"
        pool = pm.connection_from_url(srv.url)
        assert type(pool) is CountingPool
        assert [(m, u) for _, m, u in pool.calls] == [("GET", path)]
        assert type(other.connection_from_url(srv.url)) is urllib3.HTTPConnectionPool
    finally:
        pm.clear()
        other.clear()
        proxy.clear()


def test_wrap_manager_leaves_module_pool_classes_alone(tracer: zltrace.Tracer) -> None:
    """Tracing a manager gives it its own pool-class dict; the shared module dict is untouched."""
    shared = urllib3.poolmanager.pool_classes_by_scheme
    before = dict(shared)
    pm = zltrace.wrap(urllib3.PoolManager(), tracer=tracer)
    try:
        assert pm.pool_classes_by_scheme is not shared
        assert shared == before
        assert urllib3.PoolManager().pool_classes_by_scheme == before
    finally:
        pm.clear()


# -- pool __init__ parameters are readable back as attributes --------------------------------

# Parameters stored under another attribute name (what zltrace/_capture/pool.py maps).
RENAMED = {"_proxy": "proxy", "_proxy_headers": "proxy_headers", "_proxy_config": "proxy_config"}


def _proxy_config() -> Any:
    extra = [None] * (len(ProxyConfig._fields) - 2)
    return ProxyConfig(None, True, *extra)


def _distinct_values() -> dict[str, Any]:
    return {
        "host": "pinned.example",
        "port": 8443,
        "strict": True,  # urllib3 1.26 only
        "timeout": Timeout(connect=1.5, read=2.5),
        "maxsize": 7,
        "block": True,
        "headers": {"X-Pinned": "1"},
        "retries": Retry(total=4, backoff_factor=0),
        "_proxy": parse_url("http://proxy.example:3128"),
        "_proxy_headers": {"Proxy-Pinned": "1"},
        "_proxy_config": _proxy_config(),
        "key_file": "/pinned/key.pem",
        "cert_file": "/pinned/cert.pem",
        "cert_reqs": "CERT_REQUIRED",
        "key_password": "pinned-password",
        "ca_certs": "/pinned/ca.pem",
        "ssl_version": ssl.PROTOCOL_TLS_CLIENT,
        "ssl_minimum_version": ssl.TLSVersion.TLSv1_2,
        "ssl_maximum_version": ssl.TLSVersion.TLSv1_3,
        "assert_hostname": "pinned.example",
        "assert_fingerprint": "AA:BB",
        "ca_cert_dir": "/pinned/ca-dir",
    }


@pytest.mark.parametrize(
    "cls", [urllib3.HTTPConnectionPool, urllib3.HTTPSConnectionPool], ids=lambda c: c.__name__
)
def test_pool_init_parameters_are_readable_back(cls: type[Any]) -> None:
    """Every pool __init__ parameter is stored as a same-named (or mapped) attribute."""
    values = _distinct_values()
    params = [
        (name, p)
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    unknown = [name for name, _ in params if name not in values]
    assert unknown == [], f"new {cls.__name__} parameters zltrace does not know: {unknown}"
    kwargs = {name: values[name] for name, _ in params}
    pool = cls(**kwargs)
    try:
        for name, _ in params:
            if name == "maxsize":
                assert pool.pool.maxsize == values["maxsize"]
                continue
            attr = RENAMED.get(name, name)
            assert hasattr(pool, attr), f"{cls.__name__}({name}=...) is not stored as .{attr}"
            stored = getattr(pool, attr)
            assert stored is values[name] or stored == values[name], (name, stored)
    finally:
        pool.close()


def _settings(pool: Any) -> dict[str, Any]:
    out = {
        "host": pool.host,
        "port": pool.port,
        "timeout": repr(pool.timeout),
        "retries": repr(pool.retries),
        "maxsize": pool.pool.maxsize,
        "headers": dict(pool.headers),
        "block": pool.block,
        "proxy": pool.proxy,
        "proxy_headers": dict(pool.proxy_headers),
        "proxy_config": pool.proxy_config,
        "conn_kw": dict(pool.conn_kw),
    }
    for name in (
        "cert_reqs",
        "ca_certs",
        "ca_cert_dir",
        "assert_hostname",
        "assert_fingerprint",
        "cert_file",
        "key_file",
        "key_password",
        "ssl_version",
        "ssl_minimum_version",
        "ssl_maximum_version",
        "strict",
    ):
        if hasattr(pool, name):
            out[name] = getattr(pool, name)
    return out


def test_wrap_http_pool_keeps_settings(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """wrap(pool) keeps host, port, timeout, retries, maxsize, headers, block and conn_kw."""
    pool = urllib3.HTTPConnectionPool(
        srv.host,
        srv.port,
        timeout=Timeout(connect=3, read=7),
        retries=Retry(total=2),
        maxsize=5,
        block=True,
        headers={"X-Default": "yes"},
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    wrapped = zltrace.wrap(pool, tracer=tracer)
    try:
        assert wrapped is not pool
        assert isinstance(wrapped, type(pool))
        assert issubclass(wrapped.ConnectionCls, pool.ConnectionCls)
        assert _settings(wrapped) == _settings(pool)
        path = route(ok(b"wrapped"))
        assert wrapped.request("GET", path).data == b"wrapped"
    finally:
        wrapped.close()
        pool.close()
    (ex,) = records(tracer)
    assert ex.request.header("X-Default") == "yes"


def test_wrap_https_pool_keeps_tls_settings(tracer: zltrace.Tracer) -> None:
    """wrap(https_pool) keeps cert_reqs, ca_certs, assert_hostname and the other TLS settings."""
    pool = urllib3.HTTPSConnectionPool(
        "tls.example",
        8443,
        timeout=Timeout(connect=2, read=4),
        retries=Retry(total=1),
        maxsize=3,
        block=False,
        headers={"X-T": "1"},
        cert_reqs="CERT_REQUIRED",
        ca_certs="/pinned/ca.pem",
        assert_hostname="other.example",
        assert_fingerprint="AA:BB",
        ca_cert_dir="/pinned/ca-dir",
    )
    wrapped = zltrace.wrap(pool, tracer=tracer)
    try:
        assert isinstance(wrapped, urllib3.HTTPSConnectionPool)
        assert issubclass(wrapped.ConnectionCls, pool.ConnectionCls)
        assert _settings(wrapped) == _settings(pool)
    finally:
        wrapped.close()
        pool.close()


def test_wrap_keeps_instance_connection_cls(tracer: zltrace.Tracer) -> None:
    """A ConnectionCls set on the pool instance is kept (as its traced subclass) by wrap()."""

    class Custom(urllib3.connection.HTTPConnection):
        pass

    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9)
    pool.ConnectionCls = Custom
    wrapped = zltrace.wrap(pool, tracer=tracer)
    try:
        assert issubclass(wrapped.ConnectionCls, Custom)
    finally:
        wrapped.close()
        pool.close()


@pytest.mark.parametrize(
    "cls", [urllib3.HTTPConnectionPool, urllib3.HTTPSConnectionPool], ids=lambda c: c.__name__
)
def test_wrap_proxied_pool_keeps_proxy_settings(cls: type[Any], tracer: zltrace.Tracer) -> None:
    """zltrace.wrap(pool) keeps proxy, proxy_headers and proxy_config of a proxied pool."""
    pool = cls(
        "dest.example",
        None,
        _proxy=parse_url("https://proxy.example:3128"),
        _proxy_headers={"Proxy-Authorization": "Basic eDp5"},
        _proxy_config=_proxy_config(),
    )
    assert pool.proxy_config is not None and pool.proxy_config.use_forwarding_for_https
    wrapped = zltrace.wrap(pool, tracer=tracer)
    try:
        assert _settings(wrapped) == _settings(pool)
        assert wrapped.proxy_config == pool.proxy_config
    finally:
        wrapped.close()
        pool.close()


def test_wrap_pool_from_proxy_manager_keeps_proxy_config(tracer: zltrace.Tracer) -> None:
    """A pool a ProxyManager made (HTTPS forwarding proxy) keeps its proxy_config when wrapped."""
    pm = urllib3.ProxyManager("https://proxy.example:3128", use_forwarding_for_https=True)
    try:
        pool = pm.connection_from_url("https://dest.example/")
        assert pool.proxy_config.use_forwarding_for_https
        wrapped = zltrace.wrap(pool, tracer=tracer)
        assert wrapped.proxy_config == pool.proxy_config
        assert wrapped.conn_kw == pool.conn_kw
        wrapped.close()
    finally:
        pm.clear()
