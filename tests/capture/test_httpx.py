"""The httpcore(2) front-end with real httpx and httpx2 clients against loopback servers.

What is pinned: byte-exact request and response (content-length, chunked and
close-delimited framing), each chunk reaching the app as it arrives, abandoned streams and
a reset mid-body recorded with their partial bodies, credentials redacted, the app seeing
exactly what it sees untraced (results and exceptions), failures of capture never reaching
the app, and the process-wide installers with an exact undo.
"""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server import (
    ScriptedServer,
    chunk_frame,
    close,
    pause,
    reset,
    response,
    send,
    wait_for,
)
from support.trace import flushed, records

import zltrace
from zltrace._capture import httpcore_patch
from zltrace._capture.httpcore_patch import install_httpcore, install_httpcore2
from zltrace._capture.httpx_wrap import accepts, wrap_target
from zltrace._pipeline.events import capture_failures

BODY = bytes(range(256)) * 40


def _lib(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as e:  # httpx2 needs Python >= 3.11, httpx >= 3.10 in its current form
        pytest.skip(f"{name} is not importable here: {e}")


LIBS = ["httpx", "httpx2"]


@pytest.fixture(params=LIBS)
def hx(request: pytest.FixtureRequest) -> Any:
    """httpx or httpx2 (skipped where not importable)."""
    return _lib(request.param)


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_sync_body_is_byte_exact(hx: Any, tracer: zltrace.Tracer, framing: str) -> None:
    """A sync request and its response are recorded as on the wire, for each framing."""
    steps = response(200, BODY, [("X-Id", "1")], framing=framing, chunk_sizes=[100, 3000])
    with ScriptedServer([steps]) as srv:
        client = hx.Client()
        assert wrap_target(client, tracer) is client
        r = client.post(f"{srv.url}/up?q=1", content=b"payload")
        got = r.content
        client.close()
        raw_head = srv.requests[0].raw_head
    assert got == BODY
    [ex] = records(tracer)
    assert ex.outcome == "complete"
    assert ex.request.method == "POST"
    assert ex.request.url == f"{srv.url}/up?q=1"
    assert ex.request.body == b"payload"
    assert ex.response is not None
    assert ex.response.raw_body == BODY
    assert ex.response.framing == framing
    assert ex.response.header("x-id") == "1"
    # The request head as the server received it, header for header.
    sent = [ln.split(b":", 1)[0].decode() for ln in raw_head.split(b"\r\n")[1:] if ln]
    assert [n for n, _ in ex.request.headers] == sent


def test_chunked_request_body_and_keep_alive(hx: Any, tracer: zltrace.Tracer) -> None:
    """A generator upload goes out chunked; two requests on one connection are two exchanges."""
    with ScriptedServer([response(200, b"a"), response(201, b"bb")]) as srv:
        with hx.Client() as client:
            wrap_target(client, tracer)
            r1 = client.post(srv.url, content=iter([b"ab", b"cd"]))
            r2 = client.get(srv.url)
        assert srv.connections == 1
    assert (r1.content, r2.content) == (b"a", b"bb")
    first, second = records(tracer)
    assert first.request.body == b"abcd"
    assert first.request.header("transfer-encoding") == "chunked"
    assert (first.response.raw_body, second.response.raw_body) == (b"a", b"bb")  # type: ignore[union-attr]
    assert second.response.status == 201  # type: ignore[union-attr]


def test_stream_chunks_reach_app_as_they_arrive(hx: Any, tracer: zltrace.Tracer) -> None:
    """Each chunk reaches the app before the server sends the next one: no buffering."""
    gate = threading.Event()
    steps = [
        send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"),
        wait_for(gate),
        send(b"6\r\nsecond\r\n0\r\n\r\n"),
    ]
    with ScriptedServer([steps]) as srv, hx.Client() as client:
        wrap_target(client, tracer)
        with client.stream("GET", srv.url) as r:
            chunks = r.iter_raw()
            assert next(chunks) == b"first"  # would hang here if the tap buffered
            gate.set()
            rest = b"".join(chunks)
    assert rest == b"second"
    [ex] = records(tracer)
    assert ex.outcome == "complete"
    assert ex.response.raw_body == b"firstsecond"  # type: ignore[union-attr]


def test_abandoned_stream_keeps_partial_body(hx: Any, tracer: zltrace.Tracer) -> None:
    """Closing a stream after its first chunk records ``abandoned`` with what was read."""
    gate = threading.Event()
    steps = [
        send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10),
        wait_for(gate),
        send(b"y" * 90),
    ]
    with ScriptedServer([steps]) as srv:
        with hx.Client() as client:
            wrap_target(client, tracer)
            with client.stream("GET", srv.url) as r:
                assert next(r.iter_raw()) == b"x" * 10
        gate.set()
    [ex] = records(tracer)
    assert ex.outcome == "abandoned"
    assert ex.response.raw_body == b"x" * 10  # type: ignore[union-attr]


def _reset_outcome(hx: Any, srv: ScriptedServer, tracer: zltrace.Tracer | None) -> str:
    with hx.Client() as client:
        if tracer is not None:
            wrap_target(client, tracer)
        try:
            client.get(srv.url).read()
        except Exception as e:
            return type(e).__name__
    return "no error"


def test_reset_mid_body_is_an_error_with_partial_body(hx: Any, tracer: zltrace.Tracer) -> None:
    """A reset mid-body raises what it raises untraced; the trace has the error and the bytes."""
    steps = [send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 30), reset()]
    with ScriptedServer([steps]) as srv:
        untraced = _reset_outcome(hx, srv, None)
        traced = _reset_outcome(hx, srv, tracer)
    assert traced == untraced != "no error"
    [ex] = records(tracer)
    assert ex.outcome == "error"
    assert ex.error is not None
    assert ex.response.raw_body == b"z" * 30  # type: ignore[union-attr]


def test_async_stream_and_plain(hx: Any, tracer: zltrace.Tracer) -> None:
    """The async client: a plain call and a streamed one, both byte-exact."""
    replies = [
        response(200, BODY, framing="chunked", chunk_sizes=[7, 500]),
        response(200, BODY[:999]),
    ]

    async def run() -> tuple[bytes, bytes]:
        async with hx.AsyncClient() as client:
            wrap_target(client, tracer)
            async with client.stream("GET", srv.url) as r:
                streamed = b"".join([c async for c in r.aiter_raw()])
            plain = (await client.get(srv.url)).content
        return streamed, plain

    with ScriptedServer(replies) as srv:
        streamed, plain = asyncio.run(run())
    assert (streamed, plain) == (BODY, BODY[:999])
    first, second = records(tracer)
    assert first.response.raw_body == BODY  # type: ignore[union-attr]
    assert second.response.raw_body == BODY[:999]  # type: ignore[union-attr]
    assert first.outcome == second.outcome == "complete"


def test_credentials_are_redacted(hx: Any, tracer: zltrace.Tracer) -> None:
    """Authorization, x-api-key and a key in the query never reach the trace in clear."""
    steps = response(200, b"{}", [("Set-Cookie", "s=hunter2")])
    with ScriptedServer([steps]) as srv, hx.Client(headers={"x-api-key": "sk-secret-1"}) as client:
        wrap_target(client, tracer)
        client.get(f"{srv.url}/?api_key=sk-secret-2", headers={"Authorization": "Bearer x1"})
    [ex] = records(tracer)
    text = Path(tracer.path).read_bytes().decode("latin-1")  # a raw log is binary
    assert ex.request.header("authorization") != "Bearer x1"
    for secret in ("sk-secret-1", "sk-secret-2", "Bearer x1", "hunter2"):
        assert secret not in text


class _Broken:
    """A sink whose every put fails."""

    def _put(self, ev: tuple[Any, ...]) -> None:
        raise RuntimeError("sink down")


def test_capture_failure_never_reaches_app(hx: Any) -> None:
    """A failing sink is counted; the app gets its response untouched."""
    before = sum(capture_failures().values())
    steps = response(200, BODY, framing="chunked", chunk_sizes=[10])
    with ScriptedServer([steps]) as srv, hx.Client() as client:
        wrap_target(client, _Broken())
        assert client.get(srv.url).content == BODY
    assert sum(capture_failures().values()) > before


def test_wrap_target_leaves_other_objects_alone(hx: Any) -> None:
    """Anything not an httpx client or an SDK client is not this front-end's."""
    assert not accepts(object())
    assert not accepts(hx.Request("GET", "http://x/"))
    assert accepts(hx.Client()) and accepts(hx.AsyncClient())


def test_custom_transport_is_refused(hx: Any) -> None:
    """A client without an httpcore pool (a MockTransport) cannot be traced: a clear error."""
    client = hx.Client(transport=hx.MockTransport(lambda request: hx.Response(200)))
    with pytest.raises(zltrace.UnsupportedTargetError, match="httpcore connection pool"):
        wrap_target(client, _Broken())


_INSTALL_SCRIPT = """
import importlib, sys
sys.path.insert(0, {tests!r})
from support.server import ScriptedServer, response
import zltrace
from zltrace._capture import httpcore_patch
hx = importlib.import_module({name!r})
core = {core!r}
classes = [importlib.import_module(core + "._sync.http11").HTTP11Connection,
           importlib.import_module(core + "._async.http11").AsyncHTTP11Connection]
before = [dict(c.__dict__) for c in classes]
tracer = zltrace.Tracer(zltrace.Config(dir={dir!r}, flush_ms=10))
with ScriptedServer([response(200, b"one"), response(200, b"two")]) as srv:
    undo = getattr(httpcore_patch, "install_" + core)(tracer)
    assert [dict(c.__dict__) for c in classes] != before
    with hx.Client() as client:
        assert client.get(srv.url).content == b"one"
    undo()
    assert [dict(c.__dict__) for c in classes] == before, "undo did not restore the classes"
    with hx.Client() as client:
        assert client.get(srv.url).content == b"two"
assert tracer.close(timeout=10)
print([ex.response.raw_body for ex in zltrace.read(tracer.path)])
"""


@pytest.mark.parametrize(("name", "core"), [("httpx", "httpcore"), ("httpx2", "httpcore2")])
def test_installer_traces_every_client_and_undoes_exactly(
    name: str, core: str, trace_dir: Path
) -> None:
    """install: a client made anywhere is traced; undo: the classes are exactly as before and
    nothing more is recorded (in a fresh interpreter, where no client was wrapped)."""
    _lib(name)
    tests = str(Path(__file__).parent.parent)
    script = _INSTALL_SCRIPT.format(tests=tests, name=name, core=core, dir=str(trace_dir))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[b'one']"


def test_installer_undo_quiets_its_taps(hx: Any, tracer: zltrace.Tracer) -> None:
    """A connection opened under an install and reused after its undo records nothing more."""
    install = install_httpcore if hx.__name__ == "httpx" else install_httpcore2
    with ScriptedServer([response(200, b"one"), response(200, b"two")]) as srv:
        with hx.Client() as client:
            undo = install(tracer)
            assert client.get(srv.url).content == b"one"
            undo()
            assert client.get(srv.url).content == b"two"
        assert srv.connections == 1
    [ex] = records(tracer)
    assert ex.response.raw_body == b"one"  # type: ignore[union-attr]


def test_http2_exchange_warns_and_is_counted(
    hx: Any, tracer: zltrace.Tracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HTTP/2 exchange is not recorded: a ZltraceWarning once, a count in capture_failures."""
    pytest.importorskip("h2", reason="HTTP/2 in httpx needs the h2 package")
    monkeypatch.setattr(httpcore_patch, "_warned", False)
    before = capture_failures().get("httpcore.http2", 0)
    # Prior-knowledge HTTP/2 on plain http; the server hangs up on the connection preface.
    with ScriptedServer([[close()]]) as srv, hx.Client(http1=False, http2=True) as client:
        wrap_target(client, tracer)
        warns = pytest.warns(zltrace.ZltraceWarning, match="HTTP/2")
        with warns, pytest.raises(hx.HTTPError):
            client.get(srv.url)
    assert capture_failures().get("httpcore.http2", 0) == before + 1
    assert flushed(tracer) == []


def test_async_abandoned_and_forward_proxy(hx: Any, tracer: zltrace.Tracer) -> None:
    """Async: a stream left after one chunk is abandoned; a forward proxy sees the full URL."""
    gate = threading.Event()
    replies = [
        [send(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"a" * 5), wait_for(gate)],
        response(200, b"via proxy"),
    ]

    async def run(srv: ScriptedServer) -> bytes:
        async with hx.AsyncClient() as client:
            wrap_target(client, tracer)
            async with client.stream("GET", srv.url) as r:
                async for chunk in r.aiter_raw():
                    assert chunk == b"a" * 5
                    break
        gate.set()
        async with hx.AsyncClient(proxy=srv.url) as proxied:
            wrap_target(proxied, tracer)
            return (await proxied.get("http://example.invalid/p?x=1")).content

    with ScriptedServer(replies) as srv:
        assert asyncio.run(run(srv)) == b"via proxy"
        target = srv.requests[-1].target
    first, second = records(tracer)
    assert first.outcome == "abandoned"
    assert first.response.raw_body == b"a" * 5  # type: ignore[union-attr]
    assert target == "http://example.invalid/p?x=1"
    assert second.request.url == target
    assert second.response.raw_body == b"via proxy"  # type: ignore[union-attr]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(min_size=0, max_size=3000),
    chunked=st.booleans(),
    sizes=st.lists(st.integers(min_value=1, max_value=600), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=300), min_size=0, max_size=6),
)
def test_any_split_of_the_wire_is_recorded_byte_exact(
    body: bytes, chunked: bool, sizes: list[int], cuts: list[int]
) -> None:
    """Head and body split anywhere across reads (inside the head too): the body is exact."""
    hx = _lib("httpx")
    if chunked:
        pieces, rest = [], body
        for n in sizes:
            if rest:
                pieces.append(rest[:n])
                rest = rest[n:]
        if rest:
            pieces.append(rest)
        payload = b"".join(chunk_frame(p) for p in pieces) + chunk_frame(b"")
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    else:
        payload = body
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    wire, steps, at = head + payload, [], 0
    for n in cuts:
        if at < len(wire):
            steps += [send(wire[at : at + n]), pause(0.001)]
            at += n
    steps.append(send(wire[at:]))
    with tempfile.TemporaryDirectory() as d:
        tracer = zltrace.Tracer(zltrace.Config(dir=d, flush_ms=10))
        with ScriptedServer([steps]) as srv, hx.Client() as client:
            wrap_target(client, tracer)
            got = client.get(srv.url).content
        [ex] = records(tracer)
    assert got == body
    assert ex.outcome == "complete"
    assert ex.response.raw_body == body  # type: ignore[union-attr]
