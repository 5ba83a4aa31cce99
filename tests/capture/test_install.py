"""Tracing without reaching into pools: install()/uninstall(), front-end hooks, the
library targets of wrap(), and traced classes that behave as the untraced ones."""

from __future__ import annotations

import http.client
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.server import ScriptedServer, response
from support.trace import records
from urllib3.connectionpool import HTTPConnectionPool

import zltrace
from zltrace._capture import install as _install
from zltrace._capture.connection import TracedConnectionMixin, adopt

requests = pytest.importorskip("requests", reason="requests is in the test extra")

# boto3 announces the end of its support for old Pythons with a warning of its own.
pytestmark = pytest.mark.filterwarnings("ignore:Boto3 will no longer support Python")


@pytest.fixture(autouse=True)
def _uninstalled() -> Any:
    """Every test starts and ends with tracing uninstalled."""
    zltrace.uninstall()
    yield
    zltrace.uninstall()


def test_install_traces_plain_pools_and_uninstall_restores(tracer: zltrace.Tracer) -> None:
    """install() traces a pool made before it; uninstall() puts urllib3 back exactly."""
    original = HTTPConnectionPool.__dict__["_make_request"]
    with ScriptedServer([response(200, b"one"), response(200, b"two")]) as srv:
        pool = urllib3.HTTPConnectionPool(srv.host, srv.port)
        zltrace.install(tracer)
        zltrace.install(tracer)  # idempotent
        assert pool.request("GET", "/a").data == b"one"
        zltrace.uninstall()
        assert HTTPConnectionPool.__dict__["_make_request"] is original
        assert pool.request("GET", "/b").data == b"two"
    got = records(tracer)
    assert [ex.request.url.rsplit("/", 1)[1] for ex in got] == ["a"]
    assert got[0].outcome == "complete" and got[0].response.raw_body == b"one"


def test_install_traces_requests_adapter_mounted_later(tracer: zltrace.Tracer) -> None:
    """Under install(), a requests adapter mounted at any time records."""
    zltrace.install(tracer)
    with ScriptedServer([response(200, b"ok")]) as srv:
        s = requests.Session()
        s.mount("http://", requests.adapters.HTTPAdapter(max_retries=2))
        assert s.get(f"http://{srv.host}:{srv.port}/r").content == b"ok"
    assert [ex.outcome for ex in records(tracer)] == ["complete"]


def test_wrap_session_traces_adapter_mounted_later(tracer: zltrace.Tracer) -> None:
    """``wrap(session)`` then ``mount()`` of a new adapter: the new adapter records too."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        s = zltrace.wrap(requests.Session(), tracer=tracer)
        s.mount("http://", requests.adapters.HTTPAdapter(max_retries=3))
        assert s.get(f"http://{srv.host}:{srv.port}/m").content == b"ok"
        assert type(s).__name__ == "Session"
    assert [ex.outcome for ex in records(tracer)] == ["complete"]


def _bedrock(srv: ScriptedServer) -> Any:
    boto3 = pytest.importorskip("boto3", reason="boto3 is in the test extra")
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=f"http://{srv.host}:{srv.port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


BEDROCK_REPLY = response(200, b'{"out": 1}', [("Content-Type", "application/json")])


@pytest.mark.parametrize("how", ["wrap", "install"])
def test_boto3_bedrock_is_traced(tracer: zltrace.Tracer, how: str) -> None:
    """A boto3 client records through wrap(client) or install(), with botocore's own classes."""
    with ScriptedServer([BEDROCK_REPLY]) as srv:
        client = _bedrock(srv)
        if how == "wrap":
            assert zltrace.wrap(client, tracer=tracer) is client
        else:
            zltrace.install(tracer)
        out = client.invoke_model(modelId="m", body=b'{"in": 1}')
        assert out["body"].read() == b'{"out": 1}'
    (ex,) = records(tracer)
    assert ex.outcome == "complete" and ex.request.body == b'{"in": 1}'
    assert ex.response is not None and ex.response.raw_body == b'{"out": 1}'


def test_botocore_wrapped_manager_keeps_response_class_writable(tracer: zltrace.Tracer) -> None:
    """wrap() of botocore's manager: botocore's writes to response_class work and read back."""
    with ScriptedServer([BEDROCK_REPLY]) as srv:
        client = _bedrock(srv)
        zltrace.wrap(client._endpoint.http_session._manager, tracer=tracer)
        client.invoke_model(modelId="m", body=b"{}")["body"].read()
        pool = next(iter(client._endpoint.http_session._manager.pools._container.values()))
        conn = pool._new_conn()
        assert adopt(conn) and isinstance(conn, TracedConnectionMixin)
        conn.response_class = http.client.HTTPResponse
        assert conn.response_class is http.client.HTTPResponse
        assert type(pool).__name__ == "AWSHTTPConnectionPool"
    assert [ex.outcome for ex in records(tracer)] == ["complete"]


def test_connection_class_changed_after_wrap_is_used(tracer: zltrace.Tracer) -> None:
    """A ConnectionCls set after wrap() is the one connections are made of (as urllib3 does)."""

    class Mine(urllib3.connection.HTTPConnection):
        made = 0

        def __init__(self, *a: Any, **kw: Any) -> None:
            Mine.made += 1
            super().__init__(*a, **kw)

    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        pool.ConnectionCls = Mine
        assert pool.request("GET", "/c").data == b"ok"
        assert Mine.made == 1 and pool.ConnectionCls is Mine
    assert [ex.outcome for ex in records(tracer)] == ["complete"]


def test_reprs_and_errors_show_urllib3_names(tracer: zltrace.Tracer) -> None:
    """Reprs and exception texts name urllib3's classes, never a traced one."""
    pool = zltrace.wrap(urllib3.HTTPConnectionPool("127.0.0.1", 1, retries=0), tracer=tracer)
    assert str(pool).startswith("HTTPConnectionPool(")
    with pytest.raises(urllib3.exceptions.MaxRetryError) as info:
        pool.request("GET", "/")
    assert "Traced" not in str(info.value) and "HTTPConnectionPool(host=" in str(info.value)
    text = str(info.value)  # urllib3 2.x gives the connection a repr; 1.26 does not
    assert "HTTPConnection(host=" in text or "urllib3.connection.HTTPConnection object" in text


def test_stand_in_connection_is_counted_not_failed(tracer: zltrace.Tracer) -> None:
    """A connection that is no http.client connection: warned once, counted, no failure."""

    class StandIn:
        def request(self, *a: Any, **kw: Any) -> None:
            raise ConnectionResetError("stand-in")

    pool = zltrace.wrap(urllib3.HTTPConnectionPool("127.0.0.1", 1), tracer=tracer)
    failures = tracer.stats()["capture_failures"]  # process-wide: other tests add to it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConnectionResetError):
            pool._make_request(StandIn(), "GET", "/")
    assert any(issubclass(w.category, zltrace.ZltraceWarning) for w in caught)
    stats = tracer.stats()
    assert stats["unrecorded_exchanges"].get("not an http.client connection", 0) >= 1
    assert stats["capture_failures"] == failures


def test_register_frontend_runs_on_import_and_undoes(
    tracer: zltrace.Tracer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A front-end's installer runs when its module is imported; uninstall() undoes it."""
    (tmp_path / "zl_fake_frontend.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    calls: list[str] = []

    def installer(sink: Any) -> Any:
        calls.append("installed")
        assert sink is tracer
        return lambda: calls.append("undone")

    monkeypatch.setitem(_install._frontends, "zl_fake_frontend", [])
    monkeypatch.delitem(sys.modules, "zl_fake_frontend", raising=False)  # imported by a run before
    _install.register_frontend("zl_fake_frontend", installer)
    zltrace.install(tracer)
    assert calls == [] and "zl_fake_frontend" not in sys.modules
    import zl_fake_frontend  # noqa: F401

    assert calls == ["installed"]
    zltrace.uninstall()
    assert calls == ["installed", "undone"]
    assert not any(isinstance(f, _install._Finder) for f in sys.meta_path)
    monkeypatch.delitem(sys.modules, "zl_fake_frontend")


def test_reset_defaults_uninstalls() -> None:
    """reset_defaults() undoes install()."""
    zltrace.install()
    assert _install.installed() is not None
    zltrace.reset_defaults()
    assert _install.installed() is None


def test_http2_exchange_is_warned_and_counted(tracer: zltrace.Tracer) -> None:
    """urllib3's HTTP/2 connection is not recorded: warned once, counted in stats()."""
    h2conn = pytest.importorskip("urllib3.http2.connection", reason="needs urllib3 2.x + h2")
    conn = h2conn.HTTP2Connection("127.0.0.1", 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert adopt(conn) is False
    assert type(conn) is h2conn.HTTP2Connection
    assert any("HTTP/2" in str(w.message) for w in caught)
    assert tracer.stats()["unrecorded_exchanges"]["HTTP/2"] >= 1
