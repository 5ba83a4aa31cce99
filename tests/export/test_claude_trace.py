"""claude-trace export: real loopback exchanges written as claude-trace's ``RawPair`` lines.

The shape pinned here is the one claude-trace's interceptor writes (badlogic/lemmy,
``apps/claude-trace/src/interceptor.ts`` and ``types.ts``): request {timestamp, method, url,
headers, body}, response {timestamp, status_code, headers, body | body_raw} or null with a
note, and logged_at.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from support.server import ScriptedServer, gzip_bytes, response, sse_response
from support.trace import pool_for

import zltrace
from zltrace._cli import main

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def check_pair(pair: dict[str, Any]) -> dict[str, Any]:
    """Assert ``pair`` has exactly the keys and types of claude-trace's RawPair."""
    rq, rs = pair["request"], pair["response"]
    assert list(rq) == ["timestamp", "method", "url", "headers", "body"]
    assert isinstance(rq["timestamp"], float) and isinstance(rq["headers"], dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rq["headers"].items())
    assert ISO_MS.match(pair["logged_at"]), pair["logged_at"]
    if rs is None:
        assert list(pair) == ["request", "response", "note", "logged_at"]
        assert pair["note"].startswith("ORPHANED_REQUEST - No matching response received")
        return pair
    assert list(pair) == ["request", "response", "logged_at"]
    keys = list(rs)
    assert keys in (
        ["timestamp", "status_code", "headers", "body"],
        ["timestamp", "status_code", "headers", "body_raw"],
    ), keys
    assert isinstance(rs["timestamp"], float) and isinstance(rs["status_code"], int)
    assert list(rs["headers"]) == sorted(rs["headers"])
    assert all(k == k.lower() for k in rs["headers"])
    assert rq["timestamp"] <= rs["timestamp"]
    logged = datetime.strptime(pair["logged_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert rs["timestamp"] <= logged.replace(tzinfo=timezone.utc).timestamp() + 1e-6
    return pair


def pairs_of(tracer: zltrace.Tracer) -> list[dict[str, Any]]:
    """Close ``tracer``, export its trace as claude-trace lines, parse and check each."""
    assert tracer.close(timeout=10)
    out = io.StringIO()
    n = zltrace.export_claude_trace(zltrace.read(tracer.path), out)
    lines = out.getvalue().splitlines()
    assert n == len(lines)
    return [check_pair(json.loads(line)) for line in lines]


def test_json_request_and_response_bodies_are_parsed(tracer: zltrace.Tracer) -> None:
    """A JSON POST and a JSON answer: both bodies are parsed JSON, as claude-trace logs them."""
    answer = {"id": "msg_1", "content": [{"type": "text", "text": "héllo"}], "usage": {"n": 3}}
    reply = response(200, json.dumps(answer).encode(), [("Content-Type", "application/json")])
    sent = {"model": "claude", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    with ScriptedServer([reply]) as srv:
        pool_for(srv, tracer).urlopen(
            "POST",
            "/v1/messages",
            body=json.dumps(sent).encode(),
            headers={"Content-Type": "application/json", "X-Api-Key": "sk-secret"},
        )
    (pair,) = pairs_of(tracer)
    rq, rs = pair["request"], pair["response"]
    assert rq["method"] == "POST" and rq["url"] == f"http://127.0.0.1:{srv.port}/v1/messages"
    assert rq["body"] == sent
    assert rq["headers"]["content-type"] == "application/json"
    assert rq["headers"]["x-api-key"].startswith("<redacted sha256:")
    assert rs["status_code"] == 200 and rs["body"] == answer
    assert rs["headers"]["content-type"] == "application/json"


def test_timestamps_are_epoch_seconds_with_millisecond_precision(tracer: zltrace.Tracer) -> None:
    """request/response timestamps: seconds since the epoch, ms precision; logged_at the end."""
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool_for(srv, tracer).urlopen("GET", "/t")
    assert tracer.close(timeout=10)
    (ex,) = zltrace.read(tracer.path)
    out = io.StringIO()
    zltrace.export_claude_trace([ex], out)
    pair = check_pair(json.loads(out.getvalue()))
    start_ms = int(ex.started_at.timestamp() * 1000)
    assert abs(pair["request"]["timestamp"] * 1000 - start_ms) <= 1
    assert pair["request"]["timestamp"] == round(pair["request"]["timestamp"], 3)
    assert ex.timing.headers_received is not None
    head_ms = start_ms + ex.timing.headers_received / 1e6
    assert abs(pair["response"]["timestamp"] * 1000 - head_ms) <= 1
    end = ex.started_at.timestamp() + ex.timing.end / 1e9
    logged = datetime.strptime(pair["logged_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(logged.replace(tzinfo=timezone.utc).timestamp() - end) <= 0.001


def test_sse_response_is_body_raw(tracer: zltrace.Tracer) -> None:
    """An event stream is kept as ``body_raw``: the stream text, unparsed."""
    events = [b"event: message_start\ndata: {}\n\n", b"event: message_stop\ndata: {}\n\n"]
    with ScriptedServer([sse_response(events)]) as srv:
        r = pool_for(srv, tracer).urlopen("GET", "/s", preload_content=False)
        r.read()
        r.release_conn()
    (pair,) = pairs_of(tracer)
    assert pair["response"]["body_raw"] == b"".join(events).decode()
    assert pair["response"]["headers"]["content-type"] == "text/event-stream"


def test_gzip_json_response_is_decoded_then_parsed(tracer: zltrace.Tracer) -> None:
    """A gzip-encoded JSON answer is decompressed (as fetch does) before parsing."""
    wire = gzip_bytes(b'{"a": [1, 2, 3]}')
    reply = response(
        200,
        wire,
        [("Content-Type", "application/json; charset=utf-8"), ("Content-Encoding", "gzip")],
        framing="chunked",
        chunk_sizes=[5],
    )
    with ScriptedServer([reply]) as srv:
        pool_for(srv, tracer).urlopen("GET", "/gz")
    (pair,) = pairs_of(tracer)
    assert pair["response"]["body"] == {"a": [1, 2, 3]}
    assert pair["response"]["headers"]["content-encoding"] == "gzip"


def test_text_and_broken_json_responses_are_body_raw(tracer: zltrace.Tracer) -> None:
    """Plain text, and JSON-typed bodies that do not parse (NaN included), stay body_raw."""
    replies = [
        response(200, b"\xef\xbb\xbfplain \xff text", [("Content-Type", "text/plain")]),
        response(502, b"<html>bad gateway</html>", [("Content-Type", "application/json")]),
        response(200, b"NaN", [("Content-Type", "application/json")]),
    ]
    with ScriptedServer(replies) as srv:
        pool = pool_for(srv, tracer)
        for path in ("/text", "/broken", "/nan"):
            pool.urlopen("GET", path)
    text, broken, nan = pairs_of(tracer)
    assert text["response"]["body_raw"] == "plain \ufffd text"  # BOM dropped, bad byte replaced
    assert broken["response"]["body_raw"] == "<html>bad gateway</html>"
    assert broken["response"]["status_code"] == 502
    assert nan["response"]["body_raw"] == "NaN"


def test_request_bodies_are_json_text_or_null(tracer: zltrace.Tracer) -> None:
    """Request body: parsed when it is JSON (any Content-Type), text otherwise, null if empty."""
    with ScriptedServer([response(204)]) as srv:
        pool = pool_for(srv, tracer)
        pool.urlopen("POST", "/a", body=b"[1, 2]", headers={"Content-Type": "text/plain"})
        pool.urlopen("POST", "/b", body=b"name=x&y=2")
        pool.urlopen("POST", "/c", body=b"")
        pool.urlopen("GET", "/d")
    a, b, c, d = pairs_of(tracer)
    assert a["request"]["body"] == [1, 2]
    assert b["request"]["body"] == "name=x&y=2"
    assert c["request"]["body"] is None and d["request"]["body"] is None
    assert a["response"]["body_raw"] == ""


def test_headers_follow_fetch_headers_semantics(open_tracer: zltrace.Tracer) -> None:
    """Headers: lower-cased, sorted, repeats joined by ", ", set-cookie keeps the last value."""
    reply = response(
        200,
        b"x",
        [
            ("X-Multi", "one"),
            ("Set-Cookie", "a=1"),
            ("x-multi", "two"),
            ("Set-Cookie", "b=2"),
            ("Content-Type", "text/plain"),
        ],
    )
    with ScriptedServer([reply]) as srv:
        pool_for(srv, open_tracer).urlopen("GET", "/h", headers={"Cookie": "c=3"})
    (pair,) = pairs_of(open_tracer)
    headers = pair["response"]["headers"]
    assert headers["x-multi"] == "one, two"
    assert headers["set-cookie"] == "b=2"
    assert list(headers) == ["content-length", "content-type", "set-cookie", "x-multi"]
    assert pair["request"]["headers"]["cookie"] == "c=3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_exchange_without_response_is_an_orphaned_request(tracer: zltrace.Tracer) -> None:
    """No response: ``response`` null and claude-trace's orphan note, with the error appended."""
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool("127.0.0.1", _free_port(), retries=False), tracer=tracer
    )
    with pytest.raises(urllib3.exceptions.HTTPError):
        pool.urlopen("GET", "/nobody")
    (pair,) = pairs_of(tracer)
    assert pair["response"] is None
    assert "NewConnectionError" in pair["note"]


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_any_request_body_exports_as_claude_trace_would(body: bytes) -> None:
    """Any request body: null if empty, else its JSON value if it parses, else its text."""
    # The request body goes through the same code whatever produced the exchange, so this
    # property reads one real exchange and varies only the body bytes.
    ex = _one_exchange()
    pair = _export_one(attrs.evolve(ex, request=attrs.evolve(ex.request, body=body)))
    got = pair["request"]["body"]
    if not body:
        assert got is None
        return
    text = body.decode("utf-8", "replace")
    try:
        expected = json.loads(text, parse_constant=_no_constants)
    except ValueError:
        expected = text
    assert got == expected


def _no_constants(name: str) -> None:
    raise ValueError(name)


_cached: list[zltrace.Exchange] = []


def _one_exchange() -> zltrace.Exchange:
    if not _cached:
        with tempfile.TemporaryDirectory() as d, ScriptedServer([response(200, b"{}")]) as srv:
            tracer = zltrace.Tracer(zltrace.Config(dir=d, flush_ms=10))
            pool_for(srv, tracer).urlopen("POST", "/p", body=b"seed")
            assert tracer.close(timeout=10)
            _cached.extend(zltrace.read(tracer.path))
    return _cached[0]


def _export_one(ex: zltrace.Exchange) -> dict[str, Any]:
    out = io.StringIO()
    zltrace.export_claude_trace([ex], out)
    return check_pair(json.loads(out.getvalue()))


def test_cli_export_claude_trace(
    tracer: zltrace.Tracer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export --claude-trace PATH [-o OUT]`: one JSON line per exchange, to a file or stdout."""
    with ScriptedServer([response(200, b'{"n": 1}', [("Content-Type", "application/json")])]) as s:
        pool = pool_for(s, tracer)
        pool.urlopen("GET", "/1")
        pool.urlopen("GET", "/2")
    assert tracer.close(timeout=10)
    out = tmp_path / "log.jsonl"
    assert main(["export", "--claude-trace", tracer.path, "-o", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [check_pair(json.loads(line))["response"]["body"] for line in lines] == [{"n": 1}] * 2
    assert main(["export", "--claude-trace", tracer.path]) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert main(["export", "--claude-trace", str(tmp_path / "missing")]) == 2
    assert "no such trace" in capsys.readouterr().err


def test_cli_export_claude_trace_runs_as_a_module(tracer: zltrace.Tracer) -> None:
    """`python -m zltrace export --claude-trace PATH` prints the lines on stdout."""
    with ScriptedServer([response(200, b"hi", [("Content-Type", "text/plain")])]) as s:
        pool_for(s, tracer).urlopen("GET", "/")
    assert tracer.close(timeout=10)
    proc = subprocess.run(
        [sys.executable, "-m", "zltrace", "export", "--claude-trace", tracer.path],
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.decode("utf-8").splitlines()
    assert check_pair(json.loads(line))["response"]["body_raw"] == "hi"
