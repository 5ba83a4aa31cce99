"""``wrap()`` on each kind of target: pools, PoolManager, ProxyManager, requests.Session.

What is pinned: what is returned (a traced copy for a pool, the object itself otherwise),
that settings survive, that nothing global is mutated, that wrapping is idempotent, and
that every request made through a wrapped target is recorded exactly once.
"""

from __future__ import annotations

import pickle
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
import urllib3.poolmanager
from support.server import ScriptedServer, response
from support.trace import flushed, records

import zltrace

BODY = b"0123456789abcdef" * 1000


# -- pools -----------------------------------------------------------------------------------


def test_wrap_pool_returns_traced_copy_with_same_settings(tracer: zltrace.Tracer) -> None:
    """``wrap(pool)`` is a new pool with the same host, port and settings; it is traced."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = urllib3.HTTPConnectionPool(
            srv.host,
            srv.port,
            timeout=urllib3.Timeout(connect=2.5, read=3.5),
            maxsize=3,
            block=True,
            headers={"X-Pool": "pool-default"},
            retries=urllib3.Retry(4, redirect=1),
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        traced = zltrace.wrap(pool, tracer=tracer)
        try:
            assert traced is not pool
            assert isinstance(traced, urllib3.HTTPConnectionPool)
            assert isinstance(traced, type(pool))
            assert (traced.host, traced.port, traced.scheme) == (pool.host, pool.port, "http")
            assert traced.timeout.connect_timeout == 2.5
            assert traced.timeout.read_timeout == 3.5
            assert traced.pool.maxsize == 3
            assert traced.block is True
            assert dict(traced.headers) == {"X-Pool": "pool-default"}
            assert traced.retries.total == 4 and traced.retries.redirect == 1
            assert traced.conn_kw == pool.conn_kw
            assert traced.request("GET", "/traced").data == b"ok"
        finally:
            traced.close()
            pool.close()
    (ex,) = records(tracer)
    assert ex.request.url == srv.url + "/traced"
    assert ex.request.header("X-Pool") == "pool-default"
    assert srv.requests[0].header("X-Pool") == "pool-default"


class ForwardingPool(urllib3.HTTPConnectionPool):
    """A host library's pool class that only passes its arguments on (elastic-transport's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


def test_wrap_pool_of_a_class_that_forwards_its_arguments(tracer: zltrace.Tracer) -> None:
    """A pool whose class takes ``*args, **kwargs`` is copied with urllib3's own settings."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = ForwardingPool(srv.host, srv.port, maxsize=2, headers={"X-Pool": "fwd"})
        traced = zltrace.wrap(pool, tracer=tracer)
        try:
            assert isinstance(traced, ForwardingPool)
            assert (traced.host, traced.port, traced.pool.maxsize) == (srv.host, srv.port, 2)
            assert traced.request("GET", "/fwd").data == b"ok"
        finally:
            traced.close()
            pool.close()
    (ex,) = records(tracer)
    assert ex.request.url == srv.url + "/fwd" and ex.request.header("X-Pool") == "fwd"


def test_original_pool_still_works_untraced(tracer: zltrace.Tracer) -> None:
    """After ``wrap(pool)`` the original pool works as before and is not traced."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = urllib3.HTTPConnectionPool(srv.host, srv.port)
        original_cls, original_conn_cls = type(pool), pool.ConnectionCls
        traced = zltrace.wrap(pool, tracer=tracer)
        try:
            assert type(pool) is original_cls and pool.ConnectionCls is original_conn_cls
            assert pool.request("GET", "/untraced").data == b"ok"
            assert traced.request("GET", "/traced").data == b"ok"
            assert pool.request("GET", "/untraced-again").data == b"ok"
        finally:
            traced.close()
            pool.close()
    assert [r.target for r in srv.requests] == ["/untraced", "/traced", "/untraced-again"]
    (ex,) = records(tracer)
    assert ex.request.url == srv.url + "/traced"


def test_wrap_pool_twice_is_idempotent(tracer: zltrace.Tracer) -> None:
    """Wrapping a traced pool again with the same tracer returns it; no double recording."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = urllib3.HTTPConnectionPool(srv.host, srv.port)
        traced = zltrace.wrap(pool, tracer=tracer)
        again = zltrace.wrap(traced, tracer=tracer)
        try:
            assert again is traced
            assert tracer.wrap(traced) is traced
            for i in range(3):
                assert again.request("GET", f"/x{i}").data == b"ok"
        finally:
            traced.close()
            pool.close()
    exs = records(tracer)
    assert [e.request.url for e in exs] == [srv.url + f"/x{i}" for i in range(3)]


def test_rewrap_with_another_tracer_records_only_there(tmp_path: Path) -> None:
    """A traced pool wrapped by a second tracer records into that tracer only."""
    t1 = zltrace.Tracer(zltrace.Config(dir=str(tmp_path / "one"), flush_ms=10))
    t2 = zltrace.Tracer(zltrace.Config(dir=str(tmp_path / "two"), flush_ms=10))
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = urllib3.HTTPConnectionPool(srv.host, srv.port)
        p1 = zltrace.wrap(pool, tracer=t1)
        p2 = zltrace.wrap(p1, tracer=t2)
        try:
            assert p2 is not p1
            assert p1.request("GET", "/one").data == b"ok"
            assert p2.request("GET", "/two").data == b"ok"
        finally:
            for p in (p2, p1, pool):
                p.close()
    assert [e.request.url for e in records(t1)] == [srv.url + "/one"]
    assert [e.request.url for e in records(t2)] == [srv.url + "/two"]


# -- PoolManager -----------------------------------------------------------------------------


def test_pool_manager_traced_in_place(tracer: zltrace.Tracer) -> None:
    """A PoolManager is traced in place: requests to two servers are both recorded."""
    module_dict = urllib3.poolmanager.pool_classes_by_scheme
    before = dict(module_dict)
    with (
        ScriptedServer([response(200, b"from-a")]) as a,
        ScriptedServer([response(200, b"from-b")]) as b,
    ):
        pm = urllib3.PoolManager()
        try:
            assert zltrace.wrap(pm, tracer=tracer) is pm
            assert isinstance(pm, urllib3.PoolManager)
            assert pm.request("GET", a.url + "/a").data == b"from-a"
            assert pm.request("GET", b.url + "/b").data == b"from-b"
        finally:
            pm.clear()
    assert urllib3.poolmanager.pool_classes_by_scheme is module_dict
    assert module_dict == before
    assert all(module_dict[k] is v for k, v in before.items())
    exs = records(tracer)
    assert sorted(e.request.url for e in exs) == sorted([a.url + "/a", b.url + "/b"])
    assert all(e.outcome == "complete" for e in exs)


def test_fresh_pool_manager_after_wrap_is_untraced(tracer: zltrace.Tracer) -> None:
    """Wrapping one PoolManager does not trace PoolManagers created afterwards."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        traced = zltrace.wrap(urllib3.PoolManager(), tracer=tracer)
        fresh = urllib3.PoolManager()
        try:
            assert type(fresh) is urllib3.PoolManager
            assert fresh.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme
            assert fresh.request("GET", srv.url + "/fresh").data == b"ok"
            assert type(fresh.connection_from_url(srv.url)) is urllib3.HTTPConnectionPool
            assert traced.request("GET", srv.url + "/traced").data == b"ok"
        finally:
            traced.clear()
            fresh.clear()
    exs = records(tracer)
    assert [e.request.url for e in exs] == [srv.url + "/traced"]


def test_pool_manager_pools_made_before_wrap_are_replaced(tracer: zltrace.Tracer) -> None:
    """Requests after wrap() are traced even if the manager already had a pool for the host."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pm = urllib3.PoolManager()
        try:
            assert pm.request("GET", srv.url + "/before").data == b"ok"
            zltrace.wrap(pm, tracer=tracer)
            assert pm.request("GET", srv.url + "/after").data == b"ok"
        finally:
            pm.clear()
    assert [e.request.url for e in records(tracer)] == [srv.url + "/after"]


def test_wrap_pool_manager_twice_is_idempotent(tracer: zltrace.Tracer) -> None:
    """Wrapping a PoolManager twice with one tracer records each request once."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pm = urllib3.PoolManager()
        try:
            assert zltrace.wrap(pm, tracer=tracer) is pm
            assert zltrace.wrap(pm, tracer=tracer) is pm
            assert pm.request("GET", srv.url + "/once").data == b"ok"
        finally:
            pm.clear()
    assert [e.request.url for e in records(tracer)] == [srv.url + "/once"]


def test_cross_host_redirect_shares_logical_id(tracer: zltrace.Tracer) -> None:
    """A redirect to another host followed by a PoolManager: both hops, one logical id."""
    with (
        ScriptedServer([response(200, b"landed")]) as b,
        ScriptedServer([response(302, b"", [("Location", b.url + "/dest?k=v")])]) as a,
    ):
        pm = zltrace.wrap(urllib3.PoolManager(), tracer=tracer)
        try:
            r = pm.request("GET", a.url + "/start", headers={"Authorization": "Bearer x1"})
            assert r.status == 200 and r.data == b"landed"
            other = pm.request("GET", b.url + "/separate")
            assert other.data == b"landed"
        finally:
            pm.clear()
    first, second, third = records(tracer)
    assert first.request.url == a.url + "/start"
    assert second.request.url == b.url + "/dest?k=v"
    assert first.response is not None and first.response.status == 302
    assert first.logical_id == second.logical_id == first.id != second.id
    assert third.logical_id == third.id != first.logical_id
    assert all(e.outcome == "complete" for e in (first, second, third))
    # Each hop records the headers that went out on it (urllib3 drops Authorization
    # when it follows a redirect to another host).
    assert [n for n, _ in first.request.headers] == [n for n, _ in a.requests[0].headers]
    assert [n for n, _ in second.request.headers] == [n for n, _ in b.requests[0].headers]
    assert first.request.header("Authorization") is not None
    assert (second.request.header("Authorization") is None) == (
        b.requests[0].header("Authorization") is None
    )


# -- ProxyManager through a tiny forward proxy ----------------------------------------------


class ForwardProxy:
    """A minimal loopback HTTP forward proxy: absolute-form GET, one request per connection."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port: int = self.listener.getsockname()[1]
        self.seen: list[bytes] = []  # request heads as the proxy received them
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        self._accept.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        self.listener.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.listener], [], [], 0.05)
            if ready:
                client, _ = self.listener.accept()
                t = threading.Thread(target=self._handle, args=(client,), daemon=True)
                self._threads.append(t)
                t.start()

    def _recv_head(self, sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            ready, _, _ = select.select([sock], [], [], 0.05)
            if self._stop.is_set():
                return b""
            if ready:
                part = sock.recv(65536)
                if not part:
                    return b""
                data += part
        return data

    def _handle(self, client: socket.socket) -> None:
        with client:
            head = self._recv_head(client)
            if not head:
                return
            self.seen.append(head)
            lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            method, target, _version = lines[0].decode("latin-1").split(" ", 2)
            u = urlsplit(target)
            path = u.path + ("?" + u.query if u.query else "")
            forwarded = [f"{method} {path} HTTP/1.1".encode()]
            for line in lines[1:]:
                name = line.split(b":", 1)[0].strip().lower()
                if name.startswith(b"proxy-") or name == b"connection":
                    continue
                forwarded.append(line)
            forwarded.append(b"Connection: close")
            with socket.create_connection((u.hostname, u.port), timeout=5) as upstream:
                upstream.sendall(b"\r\n".join(forwarded) + b"\r\n\r\n")
                while True:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
            client.shutdown(socket.SHUT_WR)


def test_proxy_manager_records_absolute_url(tracer: zltrace.Tracer) -> None:
    """Through a ProxyManager the exchange's url is the absolute target URL, proxy auth redacted."""
    with ScriptedServer([response(200, BODY)], keep_alive=False) as origin, ForwardProxy() as proxy:
        pm = urllib3.ProxyManager(
            proxy.url, proxy_headers={"Proxy-Authorization": "Basic c2VjcmV0UHJveHk="}
        )
        try:
            assert zltrace.wrap(pm, tracer=tracer) is pm
            r = pm.request("GET", origin.url + "/via/proxy?x=1")
            assert r.status == 200 and r.data == BODY
        finally:
            pm.clear()
    target = origin.url + "/via/proxy?x=1"
    assert proxy.seen and proxy.seen[0].startswith(f"GET {target} HTTP/1.1".encode())
    assert [r.target for r in origin.requests] == ["/via/proxy?x=1"]
    (ex,) = records(tracer)
    assert ex.request.url == target
    assert ex.outcome == "complete"
    assert ex.response is not None and ex.response.raw_body == BODY
    auth = ex.request.header("Proxy-Authorization")
    assert auth is not None and auth.startswith("<redacted sha256:")
    assert b"c2VjcmV0UHJveHk" not in Path(tracer.path).read_bytes()


# -- requests.Session ------------------------------------------------------------------------


@contextmanager
def _session(tracer: zltrace.Tracer) -> Iterator[Any]:
    requests = pytest.importorskip("requests")
    s = requests.Session()
    s.trust_env = False  # no proxy or netrc settings from the environment
    try:
        assert zltrace.wrap(s, tracer=tracer) is s
        yield s
    finally:
        s.close()


def test_requests_session_get_and_stream(tracer: zltrace.Tracer) -> None:
    """A wrapped requests.Session records a GET and a streamed ``iter_content`` once each."""
    replies = [
        response(200, b'{"hello": "world"}', [("Content-Type", "application/json")]),
        response(200, BODY, framing="chunked", chunk_sizes=[1000, 3333]),
    ]
    with ScriptedServer(replies) as srv, _session(tracer) as s:
        r = s.get(srv.url + "/json", headers={"Authorization": "Bearer req-SECRET-1"})
        assert r.json() == {"hello": "world"}
        with s.get(srv.url + "/stream", stream=True) as r2:
            got = b"".join(r2.iter_content(chunk_size=777))
        assert got == BODY
    first, second = records(tracer)
    assert first.request.url == srv.url + "/json"
    assert first.outcome == "complete"
    assert first.response is not None and first.response.raw_body == b'{"hello": "world"}'
    auth = first.request.header("Authorization")
    assert auth is not None and auth.startswith("<redacted sha256:")
    assert second.request.url == srv.url + "/stream"
    assert second.outcome == "complete"
    assert second.response is not None and second.response.raw_body == BODY
    assert second.response.framing == "chunked"
    assert [n for n, _ in first.request.headers] == [n for n, _ in srv.requests[0].headers]


def test_requests_session_stream_closed_early_is_abandoned(tracer: zltrace.Tracer) -> None:
    """A requests stream closed after the first chunk is recorded once, "abandoned"."""
    with (
        ScriptedServer([response(200, BODY, chunk_sizes=[4096])]) as srv,
        _session(tracer) as s,
        s.get(srv.url + "/big", stream=True) as r,
    ):
        first = next(r.iter_content(chunk_size=100))
        assert first == BODY[:100]
    (ex,) = records(tracer)
    assert ex.outcome == "abandoned"
    assert ex.response is not None and BODY.startswith(ex.response.raw_body)


def test_requests_session_redirect_and_post(tracer: zltrace.Tracer) -> None:
    """requests' own redirect handling gives one record per hop; a POST body is recorded."""
    replies = [
        response(302, b"", [("Location", "/landing")]),
        response(200, b"landed"),
        response(201, b"made"),
    ]
    with ScriptedServer(replies) as srv, _session(tracer) as s:
        assert s.get(srv.url + "/go").text == "landed"
        assert s.post(srv.url + "/make", data=b"payload").status_code == 201
    exs = records(tracer)
    assert [e.request.url for e in exs] == [
        srv.url + "/go",
        srv.url + "/landing",
        srv.url + "/make",
    ]
    assert exs[2].request.body == b"payload" == srv.requests[2].body
    assert all(e.outcome == "complete" for e in exs)


def test_requests_session_wrap_twice_is_idempotent(tracer: zltrace.Tracer) -> None:
    """Wrapping a Session twice with one tracer records each request once."""
    with ScriptedServer([response(200, b"ok")]) as srv, _session(tracer) as s:
        assert zltrace.wrap(s, tracer=tracer) is s
        assert s.get(srv.url + "/once").content == b"ok"
        assert len(flushed(tracer)) == 1
    assert [e.request.url for e in records(tracer)] == [srv.url + "/once"]


def test_requests_session_mounted_adapter_after_wrap(tracer: zltrace.Tracer) -> None:
    """Adapters present at wrap() time keep tracing after the session pools are cleared."""
    with ScriptedServer([response(200, b"ok")]) as srv, _session(tracer) as s:
        assert s.get(srv.url + "/a").content == b"ok"
        for adapter in s.adapters.values():
            adapter.poolmanager.clear()
        assert s.get(srv.url + "/b").content == b"ok"
    assert [e.request.url for e in records(tracer)] == [srv.url + "/a", srv.url + "/b"]


def test_requests_session_through_forward_proxy(tracer: zltrace.Tracer) -> None:
    """A Session using an http proxy records the absolute target URL (proxy manager traced)."""
    with (
        ScriptedServer([response(200, b"proxied")], keep_alive=False) as origin,
        ForwardProxy() as proxy,
        _session(tracer) as s,
    ):
        s.proxies = {"http": proxy.url}
        assert s.get(origin.url + "/p?q=2").content == b"proxied"
    assert [r.target for r in origin.requests] == ["/p?q=2"]
    (ex,) = records(tracer)
    assert ex.request.url == origin.url + "/p?q=2"
    assert ex.outcome == "complete"
    assert ex.response is not None and ex.response.raw_body == b"proxied"


def test_wrapped_requests_session_still_pickles(tracer: zltrace.Tracer) -> None:
    """A Session wrapped in place can still be pickled, as requests allows; the copy works."""
    with ScriptedServer([response(200, b"ok")]) as srv, _session(tracer) as s:
        assert s.get(srv.url + "/before").content == b"ok"
        copy = pickle.loads(pickle.dumps(s))
        try:
            assert copy.get(srv.url + "/copy").content == b"ok"
        finally:
            copy.close()
        assert s.get(srv.url + "/after").content == b"ok"
    urls = [e.request.url for e in records(tracer)]
    assert urls[0] == srv.url + "/before" and urls[-1] == srv.url + "/after"


# -- what cannot be wrapped, and the master switch -------------------------------------------


def test_unsupported_target_raises(tracer: zltrace.Tracer) -> None:
    """``wrap(object())`` raises UnsupportedTargetError, a TypeError and a ZltraceError."""
    for target in (object(), "http://example.invalid", 42):
        with pytest.raises(zltrace.UnsupportedTargetError) as info:
            zltrace.wrap(target, tracer=tracer)
        assert isinstance(info.value, TypeError)
        assert isinstance(info.value, zltrace.ZltraceError)
        with pytest.raises(TypeError):
            tracer.wrap(target)


def test_unsupported_target_with_default_tracer(
    monkeypatch: pytest.MonkeyPatch, trace_dir: Path
) -> None:
    """Without a tracer argument, an unsupported target still raises UnsupportedTargetError."""
    monkeypatch.setenv("ZLTRACE_DIR", str(trace_dir))
    monkeypatch.setenv("ZLTRACE_HANDLE_SIGNALS", "0")
    with pytest.raises(zltrace.UnsupportedTargetError):
        zltrace.wrap(object())


def test_disabled_config_returns_targets_untouched(tmp_path: Path) -> None:
    """With ``Config(enabled=False)`` wrap() returns the very same object, unchanged."""
    t = zltrace.Tracer(zltrace.Config(dir=str(tmp_path / "off"), enabled=False))
    try:
        with ScriptedServer([response(200, b"ok")]) as srv:
            pool = urllib3.HTTPConnectionPool(srv.host, srv.port)
            pm = urllib3.PoolManager()
            cls, conn_cls, pm_classes = type(pool), pool.ConnectionCls, pm.pool_classes_by_scheme
            try:
                assert t.wrap(pool) is pool
                assert zltrace.wrap(pool, tracer=t) is pool
                assert type(pool) is cls and pool.ConnectionCls is conn_cls
                assert t.wrap(pm) is pm
                assert type(pm) is urllib3.PoolManager
                assert pm.pool_classes_by_scheme is pm_classes
                assert pool.request("GET", "/").data == b"ok"
                assert pm.request("GET", srv.url + "/").data == b"ok"
            finally:
                pool.close()
                pm.clear()
    finally:
        assert t.close(timeout=10)
    assert not (tmp_path / "off").exists() or not any((tmp_path / "off").iterdir())


class _LoggingPool(urllib3.HTTPConnectionPool):
    """A user's pool whose ``_make_request`` has a signature of its own."""

    seen: list[str] = []

    def _make_request(self, conn: Any, method: str, url: str, **kwargs: Any) -> Any:  # type: ignore[override]
        self.seen.append(url)
        return super()._make_request(conn, method, url, **kwargs)


def test_make_request_is_forwarded_by_position_only_for_urllib3s_own_signature(
    tracer: zltrace.Tracer,
) -> None:
    """Stock pools get the positional forwarder (urllib3 2.x); a pool class with its own
    ``_make_request`` signature keeps the generic one, and both record every exchange."""
    from zltrace._capture import pool as _pool

    _LoggingPool.seen = []  # the class's own list: the test runs once per trace format
    with ScriptedServer([response(200, b"ok")]) as srv:
        stock = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        own = tracer.wrap(_LoggingPool("127.0.0.1", srv.port))
        explicit = vars(type(stock)).get("_make_request")
        assert (explicit is _pool._make_request_explicit) == _pool._STOCK_EXPLICIT
        assert urllib3.__version__.startswith("1.") or explicit is _pool._make_request_explicit
        assert "_make_request" not in vars(type(own))  # the mixin's generic method
        assert stock.urlopen("GET", "/stock").data == b"ok"
        assert own.urlopen("GET", "/own", retries=urllib3.Retry(2)).data == b"ok"
        stock.close()
        own.close()
    assert _LoggingPool.seen == ["/own"]
    got = [ex.request.url.rsplit("/", 1)[1] for ex in records(tracer)]
    assert got == ["stock", "own"]
