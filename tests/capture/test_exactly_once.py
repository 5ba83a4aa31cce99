"""Every exchange is recorded exactly once, with the outcome that matches how it ended.

Outcomes: "complete" (body read to its end), "abandoned" (the app closed, released or dropped
the response early), "error" (the transport failed) and "incomplete" (the tracer closed while
the exchange was in flight). Each scenario runs against a real loopback server, under both
the zero-latency and the standard (synchronous) tracer.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import urllib3
from support.server import ScriptedServer, close, reset, response, send, wait_for
from support.trace import records, traced_pool

import zltrace

BODY = bytes(range(256)) * 256  # 64 KiB


def head(length: int, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (length, extra)


def only(exchanges: list[zltrace.Exchange]) -> zltrace.Exchange:
    assert len(exchanges) == 1, [(e.request.url, e.outcome) for e in exchanges]
    return exchanges[0]


# -- the app reads, stops, releases or drops --------------------------------------------------


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_read_to_end_is_complete(any_tracer: zltrace.Tracer, framing: str) -> None:
    """A body read to its end is one "complete" exchange with the whole body."""
    with (
        ScriptedServer([response(200, BODY, framing=framing, chunk_sizes=[5000])]) as srv,
        traced_pool(srv, any_tracer) as pool,
    ):
        r = pool.request("GET", "/full")
        assert r.data == BODY
    ex = only(records(any_tracer))
    assert ex.outcome == "complete" and ex.error is None
    assert ex.response is not None
    assert ex.response.raw_body == BODY
    assert ex.response.framing == framing


def test_streamed_read_to_end_is_complete(any_tracer: zltrace.Tracer) -> None:
    """A chunked body consumed with ``stream()`` is recorded once, complete."""
    with (
        ScriptedServer([response(200, BODY, framing="chunked", chunk_sizes=[777])]) as srv,
        traced_pool(srv, any_tracer) as pool,
    ):
        r = pool.request("GET", "/s", preload_content=False)
        assert b"".join(r.stream(1000)) == BODY
        r.release_conn()
    ex = only(records(any_tracer))
    assert ex.outcome == "complete"
    assert ex.response is not None and ex.response.raw_body == BODY


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_stop_early_and_close_is_abandoned(any_tracer: zltrace.Tracer, framing: str) -> None:
    """Reading part of the body then ``close()`` records "abandoned" with a prefix body."""
    with (
        ScriptedServer([response(200, BODY, framing=framing, chunk_sizes=[3000])]) as srv,
        traced_pool(srv, any_tracer) as pool,
    ):
        r = pool.request("GET", "/partial", preload_content=False)
        got = r.read(1000)
        assert got == BODY[:1000]
        r.close()
    ex = only(records(any_tracer))
    assert ex.outcome == "abandoned"
    assert ex.error is None
    assert ex.response is not None
    raw = ex.response.raw_body
    assert 1000 <= len(raw) < len(BODY)
    assert BODY.startswith(raw)


@pytest.mark.parametrize("size", [10, len(BODY)])
def test_release_unread_then_reuse_pool(any_tracer: zltrace.Tracer, size: int) -> None:
    """``release_conn()`` on an unread response: it is "abandoned"; the next request completes."""
    replies = [response(200, BODY[:size]), response(200, b"second-body")]
    with ScriptedServer(replies) as srv, traced_pool(srv, any_tracer, maxsize=1) as pool:
        r = pool.request("GET", "/one", preload_content=False)
        r.release_conn()
        r2 = pool.request("GET", "/two")
        assert r2.status == 200 and r2.data == b"second-body"
        r.close()
    exs = records(any_tracer)
    # One record per request the server saw (urllib3 may retry "/two" on a new connection
    # after http.client refuses to read a response while the unread one is still open).
    assert len(exs) == len(srv.requests)
    assert exs[0].request.url.endswith("/one") and exs[0].outcome == "abandoned"
    last = exs[-1]
    assert last.request.url.endswith("/two") and last.outcome == "complete"
    assert last.response is not None and last.response.raw_body == b"second-body"
    assert all(e.outcome == "error" for e in exs[1:-1])
    assert len({e.id for e in exs}) == len(exs)


def test_dropped_unread_response_is_recorded(any_tracer: zltrace.Tracer) -> None:
    """A response dropped unread and garbage-collected is still recorded, "abandoned"."""
    with ScriptedServer([response(200, BODY)]) as srv, traced_pool(srv, any_tracer) as pool:
        r = pool.request("GET", "/dropped", preload_content=False)
        assert r.status == 200
        with warnings.catch_warnings():
            # The app leaks its socket here; that is the scenario, not what is tested.
            warnings.simplefilter("ignore", ResourceWarning)
            del r
            gc.collect()
    ex = only(records(any_tracer))
    assert ex.outcome == "abandoned"
    assert ex.response is not None and ex.response.status == 200
    assert BODY.startswith(ex.response.raw_body)


def test_head_request_is_complete(any_tracer: zltrace.Tracer) -> None:
    """A HEAD response (no body, whatever its Content-Length says) is "complete"."""
    replies = [[send(head(12345))]]
    with ScriptedServer(replies) as srv, traced_pool(srv, any_tracer) as pool:
        r = pool.request("HEAD", "/h")
        assert r.status == 200 and r.data == b""
        r2 = pool.request("HEAD", "/h2")
        assert r2.data == b""
    exs = records(any_tracer)
    assert [e.outcome for e in exs] == ["complete", "complete"]
    assert all(e.response is not None and e.response.raw_body == b"" for e in exs)


def test_head_request_with_chunked_header_is_complete(any_tracer: zltrace.Tracer) -> None:
    """A HEAD response announcing ``Transfer-Encoding: chunked`` has no body: "complete"."""
    replies = [[send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")]]
    with ScriptedServer(replies) as srv, traced_pool(srv, any_tracer) as pool:
        r = pool.request("HEAD", "/h")
        assert r.status == 200 and r.data == b""
    ex = only(records(any_tracer))
    assert ex.outcome == "complete"
    assert ex.response is not None and ex.response.raw_body == b""


def test_no_content_is_complete(any_tracer: zltrace.Tracer) -> None:
    """A 204 (no body by definition) is "complete" without any read."""
    with ScriptedServer([response(204)]) as srv, traced_pool(srv, any_tracer) as pool:
        r = pool.request("DELETE", "/x", preload_content=False)
        assert r.status == 204
        r.release_conn()
    ex = only(records(any_tracer))
    assert ex.outcome == "complete"
    assert ex.response is not None and ex.response.status == 204


# -- the transport fails ----------------------------------------------------------------------


def _reset_mid_body(tracer: zltrace.Tracer | None) -> tuple[bytes, type[BaseException]]:
    """Read 3000 bytes, then the server resets; return what was read and what was raised."""
    gate = threading.Event()
    steps = [send(head(len(BODY)) + BODY[:3000]), wait_for(gate), reset()]
    with ScriptedServer([steps]) as srv, traced_pool(srv, tracer, retries=False) as pool:
        r = pool.request("GET", "/reset", preload_content=False)
        got = r.read(3000)
        gate.set()
        with pytest.raises(Exception) as info:
            r.read()
        r.release_conn()
    return got, type(info.value)


def test_reset_mid_body_is_error_with_partial_body(any_tracer: zltrace.Tracer) -> None:
    """A reset mid-body: "error", partial body kept, same exception class as untraced."""
    got, exc_type = _reset_mid_body(any_tracer)
    _, untraced_type = _reset_mid_body(None)
    assert got == BODY[:3000]
    assert exc_type is untraced_type
    assert issubclass(exc_type, urllib3.exceptions.HTTPError)
    ex = only(records(any_tracer))
    assert ex.outcome == "error"
    assert ex.error is not None and ex.error.type and ex.error.message
    assert "Reset" in ex.error.type or "reset" in ex.error.message.lower()
    assert ex.response is not None
    assert ex.response.raw_body == BODY[:3000]


def test_reset_during_preload_then_retry(any_tracer: zltrace.Tracer) -> None:
    """A body cut by a reset while urllib3 preloads it, then retried: "error" then "complete"."""
    replies = [[send(head(len(BODY)) + BODY[:500]), reset()], response(200, BODY)]
    with (
        ScriptedServer(replies) as srv,
        traced_pool(srv, any_tracer, retries=urllib3.Retry(2)) as pool,
    ):
        assert pool.request("GET", "/again").data == BODY
    assert len(srv.requests) == 2
    first, second = records(any_tracer)
    assert first.outcome == "error" and first.error is not None
    if first.response is not None:
        assert BODY.startswith(first.response.raw_body)
    assert second.outcome == "complete"
    assert second.response is not None and second.response.raw_body == BODY
    assert first.logical_id == second.logical_id == first.id


def _truncated(tracer: zltrace.Tracer | None) -> tuple[bytes, type[BaseException]]:
    steps = [send(head(1000) + b"y" * 400), close()]
    with ScriptedServer([steps]) as srv, traced_pool(srv, tracer, retries=False) as pool:
        r = pool.request("GET", "/short", preload_content=False)
        with pytest.raises(Exception) as info:
            r.read()
        r.release_conn()
    return b"y" * 400, type(info.value)


def test_close_before_content_length_is_error(any_tracer: zltrace.Tracer) -> None:
    """The server closes before Content-Length is reached: "error", the 400 bytes kept."""
    sent, exc_type = _truncated(any_tracer)
    _, untraced_type = _truncated(None)
    assert exc_type is untraced_type
    ex = only(records(any_tracer))
    assert ex.outcome == "error"
    assert ex.error is not None and ex.error.message
    assert ex.response is not None and ex.response.raw_body == sent


def test_close_before_last_chunk_is_error(any_tracer: zltrace.Tracer) -> None:
    """A chunked body cut off before its last chunk is "error", payload so far kept."""
    steps = [
        send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
        close(),
    ]
    with ScriptedServer([steps]) as srv, traced_pool(srv, any_tracer, retries=False) as pool:
        r = pool.request("GET", "/cut", preload_content=False)
        with pytest.raises(urllib3.exceptions.HTTPError):
            b"".join(r.stream(2))
        r.release_conn()
    ex = only(records(any_tracer))
    assert ex.outcome == "error"
    assert ex.response is not None and ex.response.raw_body == b"hello"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_connection_refused_is_error_without_response(any_tracer: zltrace.Tracer) -> None:
    """Connection refused: one "error" exchange with ``response is None`` and the error."""
    port = _free_port()
    with (
        traced_pool(port, any_tracer, retries=False) as pool,
        pytest.raises(urllib3.exceptions.HTTPError),
    ):
        pool.request("GET", "/nobody")
    ex = only(records(any_tracer))
    assert ex.outcome == "error"
    assert ex.response is None
    assert ex.error is not None and ex.error.type and ex.error.message
    assert ex.request.url == f"http://127.0.0.1:{port}/nobody"


def test_connection_refused_with_retries_records_each_attempt(tracer: zltrace.Tracer) -> None:
    """Each refused attempt is its own "error" exchange; all share one logical id."""
    port = _free_port()
    with (
        traced_pool(port, tracer, retries=urllib3.Retry(2)) as pool,
        pytest.raises(urllib3.exceptions.MaxRetryError),
    ):
        pool.request("GET", "/nobody")
    exs = records(tracer)
    assert len(exs) == 3
    assert all(e.outcome == "error" and e.response is None for e in exs)
    assert {e.logical_id for e in exs} == {exs[0].id}


@pytest.mark.parametrize("where", ["before-head", "mid-body"])
def test_read_timeout_is_error(any_tracer: zltrace.Tracer, where: str) -> None:
    """A read timeout (before the head or mid-body) is one "error" exchange."""
    never = threading.Event()
    steps = (
        [wait_for(never)]
        if where == "before-head"
        else [send(head(100) + b"z" * 10), wait_for(never)]
    )
    try:
        with (
            ScriptedServer([steps]) as srv,
            traced_pool(srv, any_tracer, retries=False, timeout=0.2) as pool,
        ):
            if where == "before-head":
                with pytest.raises(urllib3.exceptions.ReadTimeoutError):
                    pool.request("GET", "/slow", preload_content=False)
            else:
                r = pool.request("GET", "/slow", preload_content=False)
                assert r.read(10) == b"z" * 10
                with pytest.raises(urllib3.exceptions.ReadTimeoutError):
                    r.read()
                r.release_conn()
    finally:
        never.set()
    ex = only(records(any_tracer))
    assert ex.outcome == "error"
    assert ex.error is not None and ex.error.type
    if where == "before-head":
        assert ex.response is None
    else:
        assert ex.response is not None and ex.response.raw_body == b"z" * 10


# -- the tracer closes ------------------------------------------------------------------------


def _close_tracer_mid_stream(tracer: zltrace.Tracer, read_rest: Callable[[Any], bytes]) -> None:
    """Read 2000 bytes of BODY, close the tracer, then let the app read the rest."""
    gate = threading.Event()
    steps = [send(head(len(BODY)) + BODY[:2000]), wait_for(gate), send(BODY[2000:])]
    with ScriptedServer([steps]) as srv, traced_pool(srv, tracer) as pool:
        r = pool.request("GET", "/stream", preload_content=False)
        assert r.read(2000) == BODY[:2000]
        assert tracer.close(timeout=10)
        gate.set()
        assert read_rest(r) == BODY[2000:]
        r.release_conn()


def test_tracer_closed_mid_stream_is_incomplete(any_tracer: zltrace.Tracer) -> None:
    """Closing the tracer mid-stream writes "incomplete" with the partial body; the app goes on."""
    _close_tracer_mid_stream(any_tracer, lambda r: r.read())
    ex = only(list(zltrace.read(any_tracer.path)))
    assert ex.outcome == "incomplete"
    assert ex.response is not None and ex.response.raw_body == BODY[:2000]


def test_reads_after_close_are_not_queued(any_tracer: zltrace.Tracer) -> None:
    """Reads of a stream still in flight at close() count as after-close events, not queued."""
    _close_tracer_mid_stream(any_tracer, lambda r: b"".join(r.stream(1024)))
    stats = any_tracer.stats()
    assert stats["after_close_events"] > 0
    assert stats["queue_depth"] == 0


def test_requests_after_close_still_work(any_tracer: zltrace.Tracer) -> None:
    """After ``close()`` the wrapped pool still returns correct data; nothing raises."""
    replies = [response(200, b"before"), response(200, BODY, framing="chunked", chunk_sizes=[9000])]
    with ScriptedServer(replies) as srv, traced_pool(srv, any_tracer) as pool:
        assert pool.request("GET", "/a").data == b"before"
        assert any_tracer.close(timeout=10)
        for _ in range(3):
            r = pool.request("GET", "/b", preload_content=False)
            assert b"".join(r.stream(4096)) == BODY
            r.release_conn()
        assert pool.request("POST", "/c", body=b"x" * 100).data == BODY
    assert any_tracer.stats()["after_close_events"] > 0
    ex = only(list(zltrace.read(any_tracer.path)))
    assert ex.request.url.endswith("/a") and ex.outcome == "complete"


# -- many threads -----------------------------------------------------------------------------


def test_thousand_requests_from_hundred_threads(
    any_tracer: zltrace.Tracer, trace_dir: Path
) -> None:
    """100 threads x 10 requests on one pool: exactly 1000 valid, distinct, correct records."""
    n_threads, per_thread = 100, 10

    def reply(req: Any) -> Any:
        return response(200, req.target.encode() * 3)

    errors: list[BaseException] = []
    with ScriptedServer(reply) as srv, traced_pool(srv, any_tracer, maxsize=10, block=True) as pool:

        def work(tid: int) -> None:
            try:
                for i in range(per_thread):
                    path = f"/t{tid}/r{i}"
                    r = pool.request("GET", path)
                    assert r.data == path.encode() * 3, (path, r.data)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    exs = records(any_tracer)
    assert len(exs) == n_threads * per_thread
    assert len({e.id for e in exs}) == len(exs)
    assert len({e.logical_id for e in exs}) == len(exs)
    for e in exs:
        assert e.outcome == "complete"
        path = e.request.url.split(str(srv.port), 1)[1]
        assert e.response is not None and e.response.raw_body == path.encode() * 3
    paths = {e.request.url for e in exs}
    assert len(paths) == n_threads * per_thread
    if any_tracer.config.format == "raw":
        return  # a raw log has no lines: the exchanges read back above are what it holds
    lines = Path(any_tracer.path).read_bytes().splitlines()
    assert len(lines) == n_threads * per_thread
    for line in lines:
        rec = json.loads(line)
        assert rec["v"] == 1 and rec["outcome"] == "complete"
