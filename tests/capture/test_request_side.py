"""The request side: what a trace records is exactly what went on the wire.

Every test compares the recorded request with what a real loopback server received
(``srv.requests[i]``): method, target, headers in wire order (duplicates included) and body.
Also: credential redaction, retries, redirects and logical request ids.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from support.server import Request, ScriptedServer, reset, response
from support.trace import records, traced_pool
from urllib3._collections import HTTPHeaderDict  # public as urllib3.HTTPHeaderDict only in 2.x

import zltrace

URLLIB3_2 = int(urllib3.__version__.split(".")[0]) >= 2
FINGERPRINT = re.compile(r"^<redacted sha256:[0-9a-f]{12}>$")


def assert_same_as_wire(ex: zltrace.Exchange, wire: Request, srv: ScriptedServer) -> None:
    """The recorded request is the one the server received."""
    assert ex.request.method == wire.method
    assert ex.request.url == srv.url + wire.target
    assert ex.request.http_version == wire.version
    assert ex.request.headers == wire.headers
    if wire.body == b"" and wire.header("content-length") is None and not wire.raw_body:
        assert ex.request.body is None
    else:
        assert ex.request.body == wire.body


# -- bodies ------------------------------------------------------------------------------------


def test_bytes_body_and_headers_match_the_wire(tracer: zltrace.Tracer) -> None:
    """A bytes body and custom headers are recorded byte for byte, headers in wire order."""
    body = bytes(range(256)) * 4
    with ScriptedServer([response(201, b"created")]) as srv, traced_pool(srv, tracer) as pool:
        r = pool.request(
            "PUT",
            "/items/7?q=1&x=%20y",
            body=body,
            headers={"X-First": "1", "Content-Type": "application/octet-stream", "X-Last": "z"},
        )
        assert r.status == 201 and r.data == b"created"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert_same_as_wire(ex, wire, srv)
    assert ex.request.body == body
    assert ex.request.method == "PUT"
    assert ex.request.url == f"http://127.0.0.1:{srv.port}/items/7?q=1&x=%20y"
    names = [n for n, _ in ex.request.headers]
    assert names.index("X-First") < names.index("X-Last")


def test_duplicate_headers_recorded_as_sent(tracer: zltrace.Tracer) -> None:
    """Repeated header fields are recorded in wire order, each occurrence kept."""
    headers = HTTPHeaderDict()
    headers.add("X-Dup", "one")
    headers.add("X-Mid", "m")
    headers.add("X-Dup", "two")
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("GET", "/dup", headers=headers).data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert ex.request.headers == wire.headers
    if URLLIB3_2:  # urllib3 1.26 folds repeated fields into one "one, two" line
        assert [v for n, v in wire.headers if n == "X-Dup"] == ["one", "two"]
    assert ex.request.body is None


def test_large_bytes_body_recorded_exactly(tracer: zltrace.Tracer) -> None:
    """A body larger than the inline limit (kept in the side file) reads back identical."""
    body = os.urandom(200 * 1024)
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("POST", "/big", body=body).data == b"ok"
    (ex,) = records(tracer)
    assert ex.request.body == body == srv.requests[0].body
    assert_same_as_wire(ex, srv.requests[0], srv)


@pytest.mark.parametrize("text", ["plain ascii text", "na\u00efve caf\u00e9 \u00fcber"])
def test_str_body_recorded_as_encoded_on_the_wire(tracer: zltrace.Tracer, text: str) -> None:
    """A str body is recorded as the bytes urllib3 encoded it to (UTF-8 on urllib3 2)."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("POST", "/s", body=text).data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert_same_as_wire(ex, wire, srv)
    if URLLIB3_2:
        assert ex.request.body == text.encode("utf-8")
    else:  # http.client encodes a str body as Latin-1
        assert ex.request.body == text.encode("latin-1")


def test_bytearray_body_copied_at_send_time(tracer: zltrace.Tracer) -> None:
    """A bytearray body is recorded as sent, unaffected by mutating it after the request."""
    buf = bytearray(b"A" * 5000)
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("POST", "/ba", body=buf).data == b"ok"
        buf[:] = b"B" * 5000
        mv_source = bytearray(b"memoryview-body")
        assert pool.request("POST", "/mv", body=memoryview(mv_source)).data == b"ok"
        mv_source[:] = b"X" * len(mv_source)
    first, second = records(tracer)
    assert first.request.body == b"A" * 5000 == srv.requests[0].body
    assert second.request.body == b"memoryview-body" == srv.requests[1].body
    assert_same_as_wire(first, srv.requests[0], srv)
    assert_same_as_wire(second, srv.requests[1], srv)


def test_binary_file_body(tracer: zltrace.Tracer, tmp_path: Path) -> None:
    """A binary file body (several blocks) is recorded as the payload that went out."""
    data = os.urandom(50_000)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with (
        ScriptedServer([response(200, b"ok")]) as srv,
        traced_pool(srv, tracer) as pool,
        open(path, "rb") as f,
    ):
        assert pool.request("POST", "/file", body=f).data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert wire.body == data
    assert_same_as_wire(ex, wire, srv)


def test_text_file_body(tracer: zltrace.Tracer, tmp_path: Path) -> None:
    """A text-mode file body is recorded as the encoded bytes that went on the wire."""
    text = "line \u00e9 caf\u00e9\n" * 2000
    path = tmp_path / "upload.txt"
    path.write_text(text, encoding="utf-8")
    with (
        ScriptedServer([response(200, b"ok")]) as srv,
        traced_pool(srv, tracer) as pool,
        open(path, encoding="utf-8") as f,
    ):
        assert pool.request("POST", "/text", body=f).data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert_same_as_wire(ex, wire, srv)
    assert ex.request.body == text.encode("utf-8" if URLLIB3_2 else "latin-1")


def test_stringio_body(tracer: zltrace.Tracer) -> None:
    """An in-memory text stream body is recorded as what was sent."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("POST", "/sio", body=io.StringIO("hello stream")).data == b"ok"
    (ex,) = records(tracer)
    assert_same_as_wire(ex, srv.requests[0], srv)
    assert ex.request.body == b"hello stream"


def test_generator_body_dechunked_and_consumed_once(tracer: zltrace.Tracer) -> None:
    """A generator body goes out chunked; the record holds the de-chunked payload; one pass."""
    yielded: list[int] = []

    def gen() -> Iterator[bytes]:
        for i in range(6):
            yielded.append(i)
            yield b"part-%d;" % i

    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        r = pool.urlopen("POST", "/gen", body=gen())
        assert r.data == b"ok"
    assert yielded == list(range(6))
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert wire.header("transfer-encoding") == "chunked"
    assert wire.raw_body != wire.body  # framed on the wire
    assert ex.request.body == b"".join(b"part-%d;" % i for i in range(6)) == wire.body
    assert_same_as_wire(ex, wire, srv)


def test_one_shot_iterator_body(tracer: zltrace.Tracer) -> None:
    """A one-shot iterator body is recorded de-chunked and left exhausted exactly once."""
    parts = [b"alpha", b"", b"beta", b"gamma" * 3000]
    it = iter(parts)
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.urlopen("POST", "/it", body=it).data == b"ok"
    assert next(it, None) is None
    (ex,) = records(tracer)
    assert ex.request.body == b"".join(parts) == srv.requests[0].body
    assert_same_as_wire(ex, srv.requests[0], srv)


def test_explicitly_chunked_bytes_body(tracer: zltrace.Tracer) -> None:
    """``chunked=True`` with a bytes body is recorded de-chunked, headers as on the wire."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.urlopen("POST", "/c", body=b"explicitly chunked", chunked=True).data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert wire.header("transfer-encoding") == "chunked"
    assert ex.request.body == b"explicitly chunked" == wire.body
    assert_same_as_wire(ex, wire, srv)


def test_no_body_is_none(tracer: zltrace.Tracer) -> None:
    """A request without a body records ``body is None`` and an absolute URL."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("GET", "/path/x?q=1").data == b"ok"
    (ex,) = records(tracer)
    assert ex.request.body is None
    assert ex.request.url == f"http://127.0.0.1:{srv.port}/path/x?q=1"
    assert_same_as_wire(ex, srv.requests[0], srv)


def test_empty_bytes_body_is_empty_not_none(tracer: zltrace.Tracer) -> None:
    """An explicitly empty body sent with Content-Length: 0 is recorded as b"", not None."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("POST", "/empty", body=b"").data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert wire.header("content-length") == "0"
    assert ex.request.body == b""
    assert ex.request.headers == wire.headers


# -- redaction -------------------------------------------------------------------------------

REQUEST_SECRETS = {
    "Authorization": "Bearer sk-live-AAAA1111aaaa",
    "Proxy-Authorization": "Basic cHJveHk6QkJCQjIyMjI=",
    "X-Api-Key": "key-CCCC3333cccc",
    "Cookie": "session=DDDD4444dddd",
    "X-Auth-Token": "tok-EEEE5555eeee",
    "Client-Secret": "sec-FFFF6666ffff",
    "X-Goog-Api-Key": "goog-GGGG7777gggg",
}
RESPONSE_SECRETS = [
    ("Set-Cookie", "sid=HHHH8888hhhh; HttpOnly"),
    ("Set-Cookie", "csrf=IIII9999iiii"),
    ("X-Refresh-Token", "refresh-JJJJ0000jjjj"),
]


def _all_trace_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_credentials_redacted_and_never_on_disk(tracer: zltrace.Tracer, trace_dir: Path) -> None:
    """Credential headers (request and response) become fingerprints; no secret reaches disk."""
    replies = [response(200, b"ok", [*RESPONSE_SECRETS, ("X-Plain", "visible")])]
    headers = {**REQUEST_SECRETS, "X-Plain": "visible-too"}
    with ScriptedServer(replies) as srv, traced_pool(srv, tracer) as pool:
        assert pool.request("GET", "/secret", headers=headers).data == b"ok"
    (ex,) = records(tracer)
    wire = srv.requests[0]
    assert [n for n, _ in ex.request.headers] == [n for n, _ in wire.headers]
    for (name, value), (_, wire_value) in zip(ex.request.headers, wire.headers):
        if name in REQUEST_SECRETS:
            assert FINGERPRINT.match(value), (name, value)
        else:
            assert value == wire_value
    assert ex.request.header("X-Plain") == "visible-too"
    resp = ex.response
    assert resp is not None
    assert [n for n, _ in resp.headers][:3] == ["Set-Cookie", "Set-Cookie", "X-Refresh-Token"]
    for name, value in resp.headers[:3]:
        assert FINGERPRINT.match(value), (name, value)
    assert resp.header("X-Plain") == "visible"
    on_disk = _all_trace_bytes(trace_dir)
    assert on_disk  # the trace was written
    secrets = [*REQUEST_SECRETS.values(), *(v for _, v in RESPONSE_SECRETS)]
    cores = [m for s in secrets for m in re.findall(r"[A-Z]{4}\d{4}[a-z]{4}", s)]
    assert len(cores) == len(secrets) - 1  # every secret but the Basic one has a core
    for token in (*secrets, *cores, "cHJveHk6QkJCQjIyMjI"):
        assert token.encode() not in on_disk, token


def test_rejected_credential_header_never_on_disk(tracer: zltrace.Tracer, trace_dir: Path) -> None:
    """A credential http.client rejects (trailing newline) does not leak via the error record."""
    secret = "sk-live-KKKK1234kkkk"
    with (
        ScriptedServer([response(200, b"ok")]) as srv,
        traced_pool(srv, tracer, retries=False) as pool,
    ):
        with pytest.raises(ValueError):
            pool.request("GET", "/", headers={"Authorization": f"Bearer {secret}\n"})
        assert pool.request("GET", "/after").data == b"ok"
    exs = records(tracer)
    assert exs[-1].request.url == srv.url + "/after" and exs[-1].outcome == "complete"
    assert all(ex.outcome in ("error", "complete") for ex in exs)
    assert secret.encode() not in _all_trace_bytes(trace_dir)


def test_fingerprints_stable_within_a_tracer(tracer: zltrace.Tracer) -> None:
    """The same secret gives the same fingerprint within one tracer; different secrets differ."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        for token in ("same-TOKEN-1", "same-TOKEN-1", "other-TOKEN-2"):
            assert pool.request("GET", "/", headers={"Authorization": token}).data == b"ok"
    a, b, c = (ex.request.header("Authorization") for ex in records(tracer))
    assert a is not None and FINGERPRINT.match(a)
    assert a == b
    assert a != c


def test_fingerprints_differ_between_tracers(tmp_path: Path) -> None:
    """Two tracers fingerprint the same secret differently (a per-tracer random key)."""
    fps = []
    with ScriptedServer([response(200, b"ok")]) as srv:
        for name in ("one", "two"):
            t = zltrace.Tracer(zltrace.Config(dir=str(tmp_path / name), flush_ms=10))
            with traced_pool(srv, t) as pool:
                assert pool.request("GET", "/", headers={"X-Api-Key": "shared-KEY"}).data == b"ok"
            (ex,) = records(t)
            fps.append(ex.request.header("X-Api-Key"))
    assert all(fp is not None and FINGERPRINT.match(fp) for fp in fps)
    assert fps[0] != fps[1]


def test_custom_redact_headers(tmp_path: Path, trace_format: str) -> None:
    """``Config(redact_headers=...)`` is the whole list of patterns (globs, any case); the
    trace's bytes hold none of the values, in either format (each encodes its own)."""
    cfg = zltrace.Config(
        dir=str(tmp_path / "t"),
        flush_ms=10,
        redact_headers=("x-custom", "X-Internal-*"),
        format=trace_format,
    )
    headers = {
        "X-Custom": "custom-SECRET-1",
        "X-Internal-Id": "internal-SECRET-2",
        "X-Other": "plain-value",
        "Authorization": "auth-not-in-list",
    }
    t = zltrace.Tracer(cfg)
    with (
        ScriptedServer([response(200, b"ok", [("X-INTERNAL-SIG", "resp-SECRET-3")])]) as srv,
        traced_pool(srv, t) as pool,
    ):
        assert pool.request("GET", "/", headers=headers).data == b"ok"
    (ex,) = records(t)
    for name in ("X-Custom", "X-Internal-Id"):
        value = ex.request.header(name)
        assert value is not None and FINGERPRINT.match(value), name
    assert ex.request.header("X-Other") == "plain-value"
    assert ex.request.header("Authorization") == "auth-not-in-list"
    assert ex.response is not None
    sig = ex.response.header("X-Internal-Sig")
    assert sig is not None and FINGERPRINT.match(sig)
    on_disk = _all_trace_bytes(tmp_path / "t")
    for secret in (b"custom-SECRET-1", b"internal-SECRET-2", b"resp-SECRET-3"):
        assert secret not in on_disk


def test_custom_redact_headers_extending_defaults(tmp_path: Path) -> None:
    """Defaults plus an extra name redact both the defaults and the extra header."""
    cfg = zltrace.Config(
        dir=str(tmp_path / "t"),
        flush_ms=10,
        redact_headers=(*zltrace.DEFAULT_REDACT_HEADERS, "x-extra"),
    )
    t = zltrace.Tracer(cfg)
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, t) as pool:
        assert (
            pool.request("GET", "/", headers={"X-Extra": "e-1", "Authorization": "a-2"}).data
            == b"ok"
        )
    (ex,) = records(t)
    for name in ("X-Extra", "Authorization"):
        value = ex.request.header(name)
        assert value is not None and FINGERPRINT.match(value), name


# -- retries, redirects, logical ids ---------------------------------------------------------


def test_retry_after_reset_shares_logical_id(tracer: zltrace.Tracer) -> None:
    """A reset first attempt and its retry are two exchanges of one logical request."""
    with (
        ScriptedServer([[reset()], response(200, b"second time")]) as srv,
        traced_pool(srv, tracer) as pool,
    ):
        r = pool.request("GET", "/flaky", retries=urllib3.Retry(2))
        assert r.data == b"second time"
    first, second = records(tracer)
    assert len(srv.requests) == 2
    assert first.outcome == "error"
    assert first.error is not None and first.error.type and first.error.message
    assert first.response is None
    assert second.outcome == "complete"
    assert second.response is not None and second.response.raw_body == b"second time"
    assert first.id != second.id
    assert first.logical_id == second.logical_id == first.id
    for ex, wire in zip((first, second), srv.requests):
        assert_same_as_wire(ex, wire, srv)


def test_file_body_rewound_on_retry_recorded_each_time(
    tracer: zltrace.Tracer, tmp_path: Path
) -> None:
    """A file body that urllib3 rewinds for a retry is recorded in full for each attempt."""
    data = os.urandom(30_000)
    path = tmp_path / "retry.bin"
    path.write_bytes(data)
    with (
        ScriptedServer([[reset()], response(200, b"stored")]) as srv,
        traced_pool(srv, tracer) as pool,
        open(path, "rb") as f,
    ):
        r = pool.urlopen("PUT", "/store", body=f, retries=urllib3.Retry(2))
        assert r.data == b"stored"
    first, second = records(tracer)
    assert [w.body for w in srv.requests] == [data, data]
    for ex, wire in zip((first, second), srv.requests):
        assert_same_as_wire(ex, wire, srv)
    assert first.outcome == "error" and second.outcome == "complete"
    assert first.logical_id == second.logical_id == first.id


def test_status_retry_shares_logical_id(tracer: zltrace.Tracer) -> None:
    """A 503 retried by ``status_forcelist`` and the 200 after it share one logical id."""
    replies = [response(503, b"busy"), response(200, b"fine")]
    with ScriptedServer(replies) as srv, traced_pool(srv, tracer) as pool:
        r = pool.request("GET", "/busy", retries=urllib3.Retry(3, status_forcelist=[503]))
        assert r.status == 200 and r.data == b"fine"
    first, second = records(tracer)
    assert first.response is not None and first.response.status == 503
    assert second.response is not None and second.response.status == 200
    assert first.outcome == second.outcome == "complete"
    assert first.logical_id == second.logical_id == first.id != second.id
    for ex, wire in zip((first, second), srv.requests):
        assert_same_as_wire(ex, wire, srv)


def test_redirect_within_pool_shares_logical_id(tracer: zltrace.Tracer) -> None:
    """A 302 followed by the pool itself and the 200 it leads to share one logical id."""
    replies = [response(302, b"moved", [("Location", "/target?y=2")]), response(200, b"here")]
    with ScriptedServer(replies) as srv, traced_pool(srv, tracer) as pool:
        r = pool.urlopen("GET", "/start", redirect=True)
        assert r.status == 200 and r.data == b"here"
        r.release_conn()
    first, second = records(tracer)
    assert [w.target for w in srv.requests] == ["/start", "/target?y=2"]
    assert first.request.url == srv.url + "/start"
    assert second.request.url == srv.url + "/target?y=2"
    assert first.response is not None and first.response.status == 302
    assert first.logical_id == second.logical_id == first.id != second.id
    for ex, wire in zip((first, second), srv.requests):
        assert_same_as_wire(ex, wire, srv)


def test_307_with_generator_body_records_each_attempt(tracer: zltrace.Tracer) -> None:
    """On a 307 each attempt records what went out (the spent generator re-sends nothing)."""
    yielded: list[int] = []

    def gen() -> Iterator[bytes]:
        for i in range(3):
            yielded.append(i)
            yield b"chunk%d" % i

    replies = [response(307, b"", [("Location", "/again")]), response(200, b"done")]
    with ScriptedServer(replies) as srv, traced_pool(srv, tracer) as pool:
        r = pool.urlopen("POST", "/first", body=gen(), redirect=True)
        assert r.data == b"done"
        r.release_conn()
    assert yielded == [0, 1, 2]
    first, second = records(tracer)
    assert [w.target for w in srv.requests] == ["/first", "/again"]
    assert srv.requests[0].body == b"chunk0chunk1chunk2"
    for ex, wire in zip((first, second), srv.requests):
        assert_same_as_wire(ex, wire, srv)
    assert first.request.body == b"chunk0chunk1chunk2"
    assert second.request.body == srv.requests[1].body
    assert first.logical_id == second.logical_id == first.id


def test_separate_calls_get_separate_logical_ids(tracer: zltrace.Tracer) -> None:
    """Each top-level urlopen is its own logical request (logical id = its own id)."""
    with ScriptedServer([response(200, b"ok")]) as srv, traced_pool(srv, tracer) as pool:
        for i in range(3):
            assert pool.request("GET", f"/n{i}").data == b"ok"
    exs = records(tracer)
    assert len(exs) == 3
    assert len({ex.logical_id for ex in exs}) == 3
    for ex, wire in zip(exs, srv.requests):
        assert ex.logical_id == ex.id
        assert_same_as_wire(ex, wire, srv)


def test_request_made_inside_a_body_generator_is_its_own_logical_request(
    tracer: zltrace.Tracer,
) -> None:
    """A request issued while another one streams its body gets its own logical id."""
    with (
        ScriptedServer([response(200, b"ok")]) as dest,
        ScriptedServer([response(200, b"piece")]) as src,
        traced_pool(dest, tracer) as up,
        traced_pool(src, tracer) as down,
    ):

        def gen() -> Iterator[bytes]:
            for i in range(2):
                yield down.request("GET", f"/src{i}").data

        assert up.urlopen("PUT", "/dest", body=gen()).data == b"ok"
    exs = {ex.request.url: ex for ex in records(tracer)}
    put = exs[dest.url + "/dest"]
    gets = [exs[src.url + f"/src{i}"] for i in range(2)]
    assert put.request.body == b"piecepiece"
    assert put.logical_id == put.id
    for get in gets:
        assert get.logical_id == get.id != put.logical_id
