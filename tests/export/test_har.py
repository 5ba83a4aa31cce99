"""HAR 1.2 export: traces of real loopback exchanges, exported and checked against the spec.

Every document is validated against ``tests/har-1.2.schema.json`` (written from the field
tables of the HAR 1.2 spec: required fields, types, custom fields only with a leading
underscore), and every entry's ``time`` must equal the sum of its non -1 timings.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server import Routes, ScriptedServer, gzip_bytes, response, sse_response
from support.trace import pool_for

import zltrace
from zltrace._cli import main

SCHEMA = json.loads((Path(__file__).parent / "har-1.2.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def check_har(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate ``doc`` against the schema and the timing rule; return it."""
    errors = sorted(VALIDATOR.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    for entry in doc["log"]["entries"]:
        parts = [v for v in entry["timings"].values() if v != -1]
        assert sum(parts) == pytest.approx(entry["time"], abs=1e-9), entry["timings"]
    return doc


def har_of(exchanges: Any) -> dict[str, Any]:
    """Export ``exchanges`` to a string, parse and validate it."""
    out = io.StringIO()
    n = zltrace.export_har(exchanges, out)
    doc = check_har(json.loads(out.getvalue()))
    assert n == len(doc["log"]["entries"])
    return doc


def entries_of(tracer: zltrace.Tracer) -> list[dict[str, Any]]:
    """Close ``tracer``, export its trace as HAR, and return the validated entries."""
    assert tracer.close(timeout=10)
    entries: list[dict[str, Any]] = har_of(zltrace.read(tracer.path))["log"]["entries"]
    return entries


def free_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


SET_COOKIE = "sid=abc123; Path=/app; Domain=example.test; Expires=Wed, 21 Oct 2037 07:28:00 GMT"


def test_post_with_json_body_query_string_and_cookies(open_tracer: zltrace.Tracer) -> None:
    """A JSON POST exports its postData, decoded query string, request and response cookies."""
    reply = response(
        201,
        b'{"ok": true}',
        [
            ("Content-Type", "application/json"),
            ("Set-Cookie", SET_COOKIE + "; HttpOnly; Secure"),
            ("Set-Cookie", "theme=dark"),
        ],
    )
    with ScriptedServer([reply]) as srv:
        pool = pool_for(srv, open_tracer)
        pool.urlopen(
            "POST",
            "/v1/items?q=a%20b&tag=x&tag=y&empty=#frag",
            body=b'{"name": "caf\xc3\xa9"}',
            headers={"Content-Type": "application/json", "Cookie": "s=1; t=two"},
        )
    (entry,) = entries_of(open_tracer)
    rq, rs = entry["request"], entry["response"]
    assert rq["method"] == "POST"
    assert rq["url"] == f"http://127.0.0.1:{srv.port}/v1/items?q=a%20b&tag=x&tag=y&empty="
    assert rq["httpVersion"] == "HTTP/1.1"
    assert rq["queryString"] == [
        {"name": "q", "value": "a b"},
        {"name": "tag", "value": "x"},
        {"name": "tag", "value": "y"},
        {"name": "empty", "value": ""},
    ]
    assert rq["cookies"] == [{"name": "s", "value": "1"}, {"name": "t", "value": "two"}]
    assert rq["postData"] == {"mimeType": "application/json", "text": '{"name": "café"}'}
    assert rq["bodySize"] == len(b'{"name": "caf\xc3\xa9"}')
    assert {"name": "Cookie", "value": "s=1; t=two"} in rq["headers"]
    assert rs["status"] == 201 and rs["statusText"] == "Created"
    assert rs["cookies"] == [
        {
            "name": "sid",
            "value": "abc123",
            "path": "/app",
            "domain": "example.test",
            "expires": "2037-10-21T07:28:00.000Z",
            "httpOnly": True,
            "secure": True,
        },
        {"name": "theme", "value": "dark", "httpOnly": False, "secure": False},
    ]
    assert rs["content"] == {"size": 12, "mimeType": "application/json", "text": '{"ok": true}'}
    assert rs["bodySize"] == 12 and rs["redirectURL"] == ""
    assert entry["_zltrace"]["outcome"] == "complete"
    assert entry["_zltrace"]["complete_by"] == "framing"
    assert entry["_zltrace"]["error"] is None
    assert entry["_zltrace"]["framing"] == "length"


def test_redacted_cookie_headers_give_no_cookies(tracer: zltrace.Tracer) -> None:
    """Redacted Cookie / Set-Cookie values are kept as headers but not parsed as cookies."""
    reply = response(200, b"", [("Set-Cookie", "sid=secret")])
    with ScriptedServer([reply]) as srv:
        pool_for(srv, tracer).urlopen("GET", "/", headers={"Cookie": "sid=secret"})
    (entry,) = entries_of(tracer)
    assert entry["request"]["cookies"] == [] and entry["response"]["cookies"] == []
    values = [h["value"] for h in entry["request"]["headers"] if h["name"] == "Cookie"]
    assert len(values) == 1 and values[0].startswith("<redacted sha256:")
    assert "secret" not in json.dumps(entry)


def test_gzip_chunked_response_reports_decoded_content_and_compression(
    tracer: zltrace.Tracer,
) -> None:
    """A gzip body: content.text decoded, size decoded, bodySize as received, compression saved."""
    text = b"hello, compressed world " * 40
    wire = gzip_bytes(text)
    reply = response(
        200,
        wire,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Encoding", "gzip")],
        framing="chunked",
        chunk_sizes=[50, 7],
    )
    with ScriptedServer([reply]) as srv:
        r = pool_for(srv, tracer).urlopen("GET", "/gz")
        assert r.data == text
    (entry,) = entries_of(tracer)
    content = entry["response"]["content"]
    assert content["text"] == text.decode()
    assert "encoding" not in content
    assert content["size"] == len(text)
    assert content["compression"] == len(text) - len(wire)
    assert entry["response"]["bodySize"] == len(wire)
    assert entry["_zltrace"]["framing"] == "chunked"
    assert entry["_zltrace"]["chunks"][-1][0] == len(wire)


def test_deflate_body_that_cannot_be_decoded_is_exported_raw_with_a_note(
    tracer: zltrace.Tracer,
) -> None:
    """A body whose Content-Encoding does not decode is base64 of the raw bytes, with a note."""
    wire = b"\xff\xfe not deflate at all"
    reply = response(200, wire, [("Content-Encoding", "deflate")])
    with ScriptedServer([reply]) as srv:
        r = pool_for(srv, tracer).urlopen("GET", "/bad", preload_content=False)
        r.read(decode_content=False)
        r.release_conn()
    (entry,) = entries_of(tracer)
    content = entry["response"]["content"]
    assert "compression" not in content
    assert base64.b64decode(content["text"]) == wire and content["encoding"] == "base64"
    assert "deflate" in entry["_zltrace"]["decode_note"]


def test_binary_response_is_base64(tracer: zltrace.Tracer) -> None:
    """A body that is not text in its charset is exported as base64, byte-exact."""
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    with ScriptedServer([response(200, png, [("Content-Type", "image/png")])]) as srv:
        pool_for(srv, tracer).urlopen("GET", "/img.png")
    (entry,) = entries_of(tracer)
    content = entry["response"]["content"]
    assert content["encoding"] == "base64" and content["mimeType"] == "image/png"
    assert base64.b64decode(content["text"]) == png
    assert content["size"] == entry["response"]["bodySize"] == len(png)


def test_declared_charset_is_transcoded_to_utf8(tracer: zltrace.Tracer) -> None:
    """A text body in a declared non-UTF-8 charset is exported as text in that charset."""
    body = "café naïve".encode("iso-8859-1")
    reply = response(200, body, [("Content-Type", "text/plain; charset=ISO-8859-1")])
    with ScriptedServer([reply]) as srv:
        pool_for(srv, tracer).urlopen("GET", "/latin")
    (entry,) = entries_of(tracer)
    assert entry["response"]["content"]["text"] == "café naïve"
    assert "encoding" not in entry["response"]["content"]


def test_sse_stream_keeps_body_and_chunk_arrival_times(tracer: zltrace.Tracer) -> None:
    """An SSE response: text/event-stream, text is the stream, _zltrace.chunks the arrivals."""
    events = [b"event: ping\ndata: 1\n\n", b'data: {"x": 2}\n\n', b"data: [DONE]\n\n"]
    with ScriptedServer([sse_response(events, gap=0.005)]) as srv:
        r = pool_for(srv, tracer).urlopen("GET", "/stream", preload_content=False)
        for _ in r.stream(1024):
            pass
        r.release_conn()
    (entry,) = entries_of(tracer)
    content = entry["response"]["content"]
    assert content["mimeType"] == "text/event-stream"
    assert content["text"] == b"".join(events).decode()
    chunks = entry["_zltrace"]["chunks"]
    offsets = [c[0] for c in chunks]
    times = [c[1] for c in chunks]
    assert offsets == sorted(set(offsets)) and offsets[-1] == len(b"".join(events))
    assert 1 <= len(chunks) <= len(events)  # events arrive apart, unless the reader lags
    assert times == sorted(times) and all(isinstance(t, float) for t in times)
    assert times[-1] <= entry["time"]
    assert entry["_zltrace"]["framing"] == "chunked"


def test_refused_connection_is_status_zero_with_the_error(tracer: zltrace.Tracer) -> None:
    """No response: status 0, empty content, the error in _zltrace, all the time in send."""
    port = free_port()
    pool = zltrace.wrap(urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False), tracer=tracer)
    with pytest.raises(urllib3.exceptions.HTTPError):
        pool.urlopen("GET", "/nobody")
    (entry,) = entries_of(tracer)
    rs = entry["response"]
    assert rs["status"] == 0 and rs["statusText"] == ""
    assert rs["content"] == {"size": 0, "mimeType": ""}
    assert rs["bodySize"] == 0 and rs["headers"] == []
    extra = entry["_zltrace"]
    assert extra["outcome"] == "error"
    assert "NewConnectionError" in extra["error"]["type"] and extra["error"]["message"]
    assert extra["framing"] is None and extra["chunks"] == []
    assert entry["timings"]["send"] == entry["time"]
    assert entry["timings"]["wait"] == entry["timings"]["receive"] == 0


def test_redirect_sets_redirect_url_and_shares_the_logical_id(tracer: zltrace.Tracer) -> None:
    """A followed redirect: two entries, the first with redirectURL, one logical id."""
    replies = [
        response(302, b"", [("Location", "/final")]),
        response(200, b"done", [("Content-Type", "text/plain")]),
    ]
    with ScriptedServer(replies) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=tracer)
        assert pool.urlopen("GET", "/start", redirect=True).data == b"done"
    first, second = entries_of(tracer)
    assert first["response"]["status"] == 302
    assert first["response"]["redirectURL"] == "/final"
    assert second["response"]["redirectURL"] == ""
    assert second["request"]["url"].endswith("/final")
    assert first["_zltrace"]["logical_id"] == second["_zltrace"]["logical_id"]
    assert first["_zltrace"]["id"] != second["_zltrace"]["id"]


def test_binary_request_body_is_base64_with_a_custom_encoding(tracer: zltrace.Tracer) -> None:
    """A request body that is not UTF-8 goes to postData as base64 with ``_encoding``."""
    blob = bytes(range(255, -1, -1))
    with ScriptedServer([response(204)]) as srv:
        pool_for(srv, tracer).urlopen(
            "PUT", "/blob", body=blob, headers={"Content-Type": "application/octet-stream"}
        )
    (entry,) = entries_of(tracer)
    post = entry["request"]["postData"]
    assert post["_encoding"] == "base64" and base64.b64decode(post["text"]) == blob
    assert post["mimeType"] == "application/octet-stream"
    assert entry["response"]["content"] == {"size": 0, "mimeType": "", "text": ""}


def test_started_date_time_is_iso_with_milliseconds(tracer: zltrace.Tracer) -> None:
    """startedDateTime is the exchange's start in UTC, ISO 8601 with milliseconds and Z."""
    with ScriptedServer([response(200, b"x")]) as srv:
        pool_for(srv, tracer).urlopen("GET", "/")
    assert tracer.close(timeout=10)
    (ex,) = zltrace.read(tracer.path)
    (entry,) = har_of([ex])["log"]["entries"]
    assert entry["startedDateTime"] == ex.started_at.strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{ex.started_at.microsecond // 1000:03d}Z"
    )
    t = ex.timing
    assert entry["time"] == pytest.approx(t.end / 1e6, abs=0.002)
    assert entry["timings"]["send"] == pytest.approx(t.request_sent / 1e6, abs=0.001)


def test_empty_trace_is_a_valid_har_with_no_entries() -> None:
    """No exchanges: a valid HAR 1.2 log naming zltrace as creator, with no entries."""
    doc = har_of([])
    assert doc["log"]["version"] == "1.2"
    assert doc["log"]["creator"] == {"name": "zltrace", "version": zltrace.__version__}
    assert doc["log"]["entries"] == []


def test_export_streams_each_entry_before_reading_the_next(tracer: zltrace.Tracer) -> None:
    """export_har writes an entry as soon as its exchange is read, not after the last one."""
    with ScriptedServer([response(200, b"a")]) as srv:
        pool = pool_for(srv, tracer)
        for i in range(4):
            pool.urlopen("GET", f"/{i}")
    assert tracer.close(timeout=10)
    out = io.StringIO()
    written_before: list[int] = []

    def watched() -> Iterator[zltrace.Exchange]:
        for ex in zltrace.read(tracer.path):
            written_before.append(out.getvalue().count('"startedDateTime"'))
            yield ex

    assert zltrace.export_har(watched(), out) == 4
    assert written_before == [0, 1, 2, 3]
    check_har(json.loads(out.getvalue()))


# -- arbitrary bodies and chunk splits ---------------------------------------------------------

_routes = Routes("/any/")


@pytest.fixture(scope="module")
def srv() -> Iterator[ScriptedServer]:
    """A keep-alive server answering each path with the steps registered for it."""
    with _routes.serve() as s:
        yield s


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(st.binary(max_size=3000), st.text(max_size=500).map(str.encode)),
    sizes=st.lists(st.integers(1, 700), min_size=1, max_size=4),
    encoding=st.sampled_from(["identity", "gzip", "deflate"]),
    mime=st.sampled_from(["application/octet-stream", "text/plain; charset=utf-8", ""]),
)
def test_any_body_round_trips_through_har_content(
    srv: ScriptedServer, body: bytes, sizes: list[int], encoding: str, mime: str
) -> None:
    """For any body, chunking and coding, content decodes back to exactly the decoded body."""
    wire = {"identity": body, "gzip": gzip_bytes(body), "deflate": zlib.compress(body)}[encoding]
    headers = [("Content-Encoding", encoding)] + ([("Content-Type", mime)] if mime else [])
    path = _routes.route(response(200, wire, headers, framing="chunked", chunk_sizes=sizes))
    with tempfile.TemporaryDirectory() as d:
        tracer = zltrace.Tracer(zltrace.Config(dir=d, flush_ms=10))
        try:
            pool_for(srv, tracer).urlopen("GET", path)
        finally:
            assert tracer.close(timeout=10)
        (entry,) = har_of(zltrace.read(tracer.path))["log"]["entries"]
    content = entry["response"]["content"]
    got = (
        base64.b64decode(content["text"])
        if content.get("encoding") == "base64"
        else content["text"].encode("utf-8")
    )
    assert got == body
    assert content["size"] == len(body) and entry["response"]["bodySize"] == len(wire)
    chunks = entry["_zltrace"]["chunks"]
    assert (chunks[-1][0] if chunks else 0) == len(wire)


# -- the command line ----------------------------------------------------------------------------


def _traced_two(tracer: zltrace.Tracer) -> str:
    with ScriptedServer([response(200, b'{"a": 1}', [("Content-Type", "application/json")])]) as s:
        pool = pool_for(s, tracer)
        pool.urlopen("GET", "/one")
        pool.urlopen("GET", "/two")
    assert tracer.close(timeout=10)
    return tracer.path


def test_cli_export_har_to_a_file_and_to_stdout(
    tracer: zltrace.Tracer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export --har PATH -o OUT` writes the HAR file; without -o (or -o -) it goes to stdout."""
    path = _traced_two(tracer)
    out = tmp_path / "out.har"
    assert main(["export", "--har", path, "-o", str(out)]) == 0
    from_file = check_har(json.loads(out.read_text(encoding="utf-8")))
    assert len(from_file["log"]["entries"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert main(["export", "--har", str(Path(path).parent)]) == 0
    assert json.loads(capsys.readouterr().out) == from_file
    assert main(["export", "--har", path, "-o", "-"]) == 0
    assert json.loads(capsys.readouterr().out) == from_file


def test_cli_progress_reports_on_stderr(
    tracer: zltrace.Tracer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--progress reports what was exported on stderr, leaving stdout to the document."""
    path = _traced_two(tracer)
    assert main(["export", "--har", path, "--progress"]) == 0
    captured = capsys.readouterr()
    assert "exported 2 exchanges to stdout" in captured.err
    check_har(json.loads(captured.out))


def test_cli_missing_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace path that does not exist: a clear message on stderr and exit status 2."""
    missing = tmp_path / "nope.jsonl"
    assert main(["export", "--har", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(missing) in captured.err and "no such trace" in captured.err


def test_cli_torn_line_is_a_warning_not_a_crash(
    tracer: zltrace.Tracer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A torn last line is reported on stderr; the intact exchanges are still exported."""
    path = _traced_two(tracer)
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"v":1,"id":"torn')
    assert main(["export", "--har", path]) == 0
    captured = capsys.readouterr()
    assert len(check_har(json.loads(captured.out))["log"]["entries"]) == 2
    assert "warning:" in captured.err and "torn" in captured.err


def test_cli_export_har_runs_as_a_module(tracer: zltrace.Tracer, tmp_path: Path) -> None:
    """`python -m zltrace export --har` works as a program and writes valid HAR."""
    path = _traced_two(tracer)
    out = tmp_path / "m.har"
    proc = subprocess.run(
        [sys.executable, "-m", "zltrace", "export", "--har", path, "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    assert len(check_har(json.loads(out.read_bytes().decode("utf-8")))["log"]["entries"]) == 2


def test_cli_export_needs_a_format(capsys: pytest.CaptureFixture[str]) -> None:
    """`export` without --har or --claude-trace is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["export", "somewhere"])
    assert exc.value.code == 2
    assert "--har" in capsys.readouterr().err
