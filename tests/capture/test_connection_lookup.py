"""The connection class is looked up when a connection is made, as urllib3 itself does.

A ``ConnectionCls`` assigned after ``wrap()`` and ``urllib3.http2.inject_into_urllib3()``
called after ``wrap()`` behave as on a bare pool; HTTP/2 exchanges are not recorded, but
warned about once and counted. Reprs and error texts name urllib3's own classes, and a
connection object of another kind is used as is, its exchange skipped without a failure.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.server import ScriptedServer, accept_each, response
from support.trace import flushed, records

import zltrace
from zltrace._pipeline.events import capture_failures

URLLIB3_2 = int(urllib3.__version__.split(".")[0]) >= 2


class MarkedConnection(urllib3.connection.HTTPConnection):
    """A user's connection class, set on a pool after it was wrapped."""

    marked = True


def test_connection_cls_assigned_after_wrap_is_used_and_traced(tracer: zltrace.Tracer) -> None:
    """pool.ConnectionCls = X after wrap(): connections are (traced) X, exchanges recorded."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.ConnectionCls = MarkedConnection
        assert issubclass(pool.ConnectionCls, MarkedConnection)
        conn = pool._get_conn()
        assert isinstance(conn, MarkedConnection) and conn.marked
        pool._put_conn(conn)
        assert pool.request("GET", "/x").data == b"ok"
        pool.close()
    (ex,) = records(tracer)
    assert ex.response is not None and ex.response.raw_body == b"ok"


def test_class_level_connection_cls_change_after_wrap_is_followed(
    tracer: zltrace.Tracer,
) -> None:
    """A ConnectionCls change on the pool's own class after wrap() is seen by the traced pool."""

    class Pool(urllib3.HTTPConnectionPool):
        pass

    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(Pool(srv.host, srv.port), tracer=tracer)
        Pool.ConnectionCls = MarkedConnection
        assert issubclass(pool.ConnectionCls, MarkedConnection)
        assert pool.request("GET", "/y").data == b"ok"
        pool.close()
    (ex,) = records(tracer)
    assert ex.request.url.endswith("/y")


def test_reprs_and_errors_name_urllib3_classes(tracer: zltrace.Tracer) -> None:
    """A refused connection's error text reads HTTPConnectionPool(...), not a traced name."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    bare = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False)
    pool = zltrace.wrap(bare, tracer=tracer)
    assert type(pool).__name__ == "HTTPConnectionPool"
    assert pool.ConnectionCls.__name__ == "HTTPConnection"
    assert str(pool) == str(bare) and "Traced" not in repr(pool._new_conn())
    errors = []
    for p in (bare, pool):
        with pytest.raises(urllib3.exceptions.HTTPError) as info:
            p.request("GET", "/")
        errors.append(str(info.value))
    assert errors[0].split(" object at ")[0] == errors[1].split(" object at ")[0]
    assert "Traced" not in errors[1]


class ForeignConnection:
    """Not an http.client connection: answers every request itself (a test double)."""

    def __init__(self) -> None:
        self.sock = None
        self.is_verified = False
        self.proxy_is_verified = None
        self.timeout = None
        self.requests: list[tuple[str, str]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        self.requests.append((method, url))

    def getresponse(self) -> Any:
        return urllib3.HTTPResponse(body=b"canned", status=200, preload_content=False)

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return None


@pytest.mark.skipif(not URLLIB3_2, reason="_make_request's signature here is urllib3 2.x's")
def test_foreign_connection_is_used_as_is_and_skipped_quietly(tracer: zltrace.Tracer) -> None:
    """A foreign connection handed to _make_request works; no failure is counted."""
    pool = zltrace.wrap(urllib3.HTTPConnectionPool("127.0.0.1", 9), tracer=tracer)
    conn = ForeignConnection()
    before = sum(capture_failures().values())
    skipped = tracer.stats()["unrecorded_exchanges"].get("not an http.client connection", 0)
    r = pool._make_request(conn, "GET", "/canned")
    assert r.status == 200 and conn.requests == [("GET", "/canned")]
    assert sum(capture_failures().values()) == before
    unrecorded = tracer.stats()["unrecorded_exchanges"]
    assert unrecorded["not an http.client connection"] == skipped + 1
    assert flushed(tracer) == []


# -- HTTP/2 ------------------------------------------------------------------------------------


class H2Server:
    """A loopback HTTPS server speaking HTTP/2 only (ALPN h2); answers every stream ``h2-ok``."""

    def __init__(self, ca: Any) -> None:
        import h2.config
        import h2.connection
        import h2.events

        self.h2 = h2
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.set_alpn_protocols(["h2"])
        ca.issue_cert("localhost", "127.0.0.1").configure_cert(self.ctx)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        accept_each(self.sock, self._serve)

    def _serve(self, raw: socket.socket) -> None:
        h2 = self.h2
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
                c.initiate_connection()
                conn.sendall(c.data_to_send())
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    for event in c.receive_data(data):
                        if isinstance(event, h2.events.StreamEnded):
                            c.send_headers(
                                event.stream_id, [(":status", "200"), ("content-length", "5")]
                            )
                            c.send_data(event.stream_id, b"h2-ok", end_stream=True)
                    conn.sendall(c.data_to_send())
        except (OSError, ssl.SSLError):
            return

    def close(self) -> None:
        self.sock.close()


def test_http2_injected_after_wrap_behaves_as_bare_and_is_counted(
    tracer: zltrace.Tracer, tmp_path: Path
) -> None:
    """inject_into_urllib3() after wrap(): HTTP/2 as bare, one warning, counted, not recorded."""
    if not URLLIB3_2:
        pytest.skip("urllib3.http2 needs urllib3 2.x")
    trustme = pytest.importorskip("trustme")
    pytest.importorskip("h2", reason="h2 is not installed (test extra)")
    import urllib3.http2

    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    srv = H2Server(ca)
    pool = zltrace.wrap(
        urllib3.HTTPSConnectionPool("127.0.0.1", srv.port, ca_certs=str(ca_file)), tracer=tracer
    )
    urllib3.http2.inject_into_urllib3()
    try:
        bare = urllib3.HTTPSConnectionPool("127.0.0.1", srv.port, ca_certs=str(ca_file))
        assert pool.ConnectionCls is bare.ConnectionCls
        with pytest.warns(zltrace.ZltraceWarning, match="HTTP/2"):
            r = pool.request("GET", "/one")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r2 = pool.request("GET", "/two")
        b = bare.request("GET", "/bare")
        assert (r.status, r.data, r.version) == (b.status, b.data, b.version) == (200, b"h2-ok", 20)
        assert r2.data == b"h2-ok"
        assert tracer.stats()["unrecorded_exchanges"]["HTTP/2"] == 2
        assert sum(capture_failures().values()) == 0
    finally:
        urllib3.http2.extract_from_urllib3()
        srv.close()
    assert flushed(tracer) == []
