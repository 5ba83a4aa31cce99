"""Credentials in URL query strings (``?key=``, pre-signed URLs) never reach disk.

Real loopback servers; the trace directory's bytes are searched for every secret.

The tests that trace run with both formats (``trace_format``): each encodes what it stores
in its own code (JSON lines: the assembler; raw: the record encoder).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import urllib3
from support.server import ScriptedServer, response
from support.trace import records

import zltrace
from zltrace._pipeline.redact import Redactor
from zltrace.config import DEFAULT_REDACT_QUERY, resolve_env

TOKEN = re.compile(r"redacted-sha256-([0-9a-f]{12})")


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_secret_query_values_replaced_rest_kept_byte_for_byte(
    tmp_path: Path, trace_format: str
) -> None:
    """Matching names (any case, percent-encoded) lose their values; the rest of the URL,
    order, separators and encoding included, is what went on the wire."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))
    target = (
        "/v1/models?alt=json&key=AIzaSECRET-one&page=2&X-Amz-Signature=abc%2FSECRET-two"
        "&access_token=SECRET-three&q=a%20b&API%5Fkey=SECRET-four&empty=&key"
    )
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=t)
        assert pool.request("GET", target).data == b"ok"
        pool.close()
        assert srv.requests[0].target == target  # the server got the real thing
    (ex,) = records(t)
    url = ex.request.url
    assert url.startswith(f"http://127.0.0.1:{srv.port}/v1/models?alt=json&key=redacted-sha256-")
    kept = re.sub(TOKEN, "T", url.split("?", 1)[1])
    assert (
        kept
        == "alt=json&key=T&page=2&X-Amz-Signature=T&access_token=T&q=a%20b&API%5Fkey=T&empty=&key"
    )
    t.close()
    on_disk = _all_bytes(d)
    for secret in (b"SECRET-one", b"SECRET-two", b"SECRET-three", b"SECRET-four", b"SECRET"):
        assert secret not in on_disk


def test_same_value_in_header_and_query_shows_the_same_digest(
    tracer: zltrace.Tracer, trace_format: str
) -> None:
    """One token sent as ``?api_key=`` and as ``X-Api-Key`` gets the same 12 hex digits."""
    t = zltrace.Tracer(
        zltrace.Config(dir=tracer.config.dir + "-2", flush_ms=10, format=trace_format)
    )
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=t)
        pool.request("GET", "/x?api_key=same%2Btoken", headers={"X-Api-Key": "same+token"})
        pool.close()
    (ex,) = records(t)
    header = ex.request.header("X-Api-Key")
    m = TOKEN.search(ex.request.url)
    assert header is not None and m is not None
    assert header == f"<redacted sha256:{m.group(1)}>"
    t.close()


def test_redirect_location_to_a_presigned_url_is_redacted(
    tmp_path: Path, trace_format: str
) -> None:
    """A response header holding a URL (``Location``) has its query redacted like a request's."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))
    location = (
        "https://bucket.s3.example/obj?X-Amz-Credential=AKIA-SECRET-cred&X-Amz-Expires=60"
        "&X-Amz-Signature=SECRET-sig#access_token=SECRET-frag"
    )
    with ScriptedServer([response(302, b"", [("Location", location)])]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=t)
        r = pool.request("GET", "/download", redirect=False)
        assert r.status == 302 and r.headers["Location"] == location  # the app sees it all
        pool.close()
    (ex,) = records(t)
    assert ex.response is not None
    got = ex.response.header("Location")
    assert got is not None
    assert TOKEN.sub("T", got) == (
        "https://bucket.s3.example/obj?X-Amz-Credential=T&X-Amz-Expires=60"
        "&X-Amz-Signature=T#access_token=T"
    )
    t.close()
    assert b"SECRET" not in _all_bytes(d)


def test_error_message_quoting_the_url_is_scrubbed_with_the_urls_digits(
    tmp_path: Path, trace_format: str
) -> None:
    """An exception raised while the request is sent (here by the app's own body generator)
    whose message quotes the secret, raw or percent-decoded, is written with the same
    ``sha256`` digits as the URL."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))

    def body() -> Iterator[bytes]:
        yield b"part one"
        raise ValueError("upload to /up?sig=SECRET%2Bsig failed (sig SECRET+sig)")

    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False), tracer=t)
        with pytest.raises(ValueError, match="SECRET"):  # the app's exception is untouched
            pool.urlopen("POST", "/up?sig=SECRET%2Bsig", body=body(), chunked=True)
        pool.close()
    (ex,) = records(t)
    assert ex.error is not None
    m = TOKEN.search(ex.request.url)
    assert m is not None
    assert "SECRET" not in ex.error.message
    assert ex.error.message.count(f"<redacted sha256:{m.group(1)}>") == 2, ex.error.message
    t.close()
    assert b"SECRET" not in _all_bytes(d)


def test_refused_request_url_redacted(tmp_path: Path, trace_format: str) -> None:
    """Nothing was sent: the URL comes from the call, and is redacted all the same."""
    d = tmp_path / "t"
    t = zltrace.Tracer(zltrace.Config(dir=str(d), flush_ms=10, format=trace_format))
    port = _free_port()
    pool = zltrace.wrap(urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False), tracer=t)
    with pytest.raises(urllib3.exceptions.HTTPError):
        pool.request("GET", "/a?token=SECRET-refused")
    pool.close()
    (ex,) = records(t)
    assert ex.outcome == "error" and ex.response is None
    assert TOKEN.search(ex.request.url)
    t.close()
    assert b"SECRET-refused" not in _all_bytes(d)


def test_refused_requests_keep_their_own_urls(tracer: zltrace.Tracer) -> None:
    """Two calls that never reached the wire are recorded with their own method and URL (the
    parsed-head cache once keyed them alike)."""
    port = _free_port()
    pool = zltrace.wrap(urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False), tracer=tracer)
    for method, path in (("GET", "/first"), ("POST", "/second")):
        with pytest.raises(urllib3.exceptions.HTTPError):
            pool.request(method, path)
    pool.close()
    got = sorted((e.request.method, e.request.url) for e in records(tracer))
    assert got == [
        ("GET", f"http://127.0.0.1:{port}/first"),
        ("POST", f"http://127.0.0.1:{port}/second"),
    ]


def test_config_redact_query_empty_turns_it_off(tmp_path: Path, trace_format: str) -> None:
    t = zltrace.Tracer(
        zltrace.Config(dir=str(tmp_path / "t"), flush_ms=10, format=trace_format, redact_query=())
    )
    with ScriptedServer([response(200, b"ok")]) as srv:
        pool = zltrace.wrap(urllib3.HTTPConnectionPool(srv.host, srv.port), tracer=t)
        pool.request("GET", "/x?key=visible")
        pool.close()
    (ex,) = records(t)
    assert ex.request.url.endswith("/x?key=visible")
    t.close()


def test_env_adds_and_removes_query_names() -> None:
    cfg = zltrace.Config.from_env({"ZLTRACE_REDACT_QUERY": "session, -key"})
    assert "session" in cfg.redact_query
    assert "key" not in cfg.redact_query
    assert set(DEFAULT_REDACT_QUERY) - {"key"} <= set(cfg.redact_query)


def test_env_bad_query_pattern_warns_and_keeps_the_default() -> None:
    (setting,) = [
        s for s in resolve_env({"ZLTRACE_REDACT_QUERY": "-nosuch"}) if s.field == "redact_query"
    ]
    assert setting.value == DEFAULT_REDACT_QUERY
    assert setting.problem


def test_config_rejects_bad_query_patterns() -> None:
    with pytest.raises(zltrace.ConfigError, match="redact_query"):
        zltrace.Config(redact_query=("ok", ""))


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/p", "/p"),
        ("/p?", "/p?"),
        ("/p?a=1&b", "/p?a=1&b"),
        ("/p?key=", "/p?key="),
        ("/p?KEY=s3cr3t#frag", "/p?KEY=T#frag"),
        ("http://h/p?sig=x&sig=y", "http://h/p?sig=T&sig=T"),
        ("/p?my_api_key=x;y", "/p?my_api_key=T;y"),
        ("/p?a=1;token=s", "/p?a=1;token=T"),
        ("/p;key=x/q?a=1", "/p;key=x/q?a=1"),  # the path is never touched
        ("/cb#access_token=abc&state=1", "/cb#access_token=T&state=1"),
        ("/p?next=/x?key=abc", "/p?next=/x?key=T"),
        ("/p?a=1&amp;key=s", "/p?a=1&amp;key=T"),
        ("/p?max_tokens=5", "/p?max_tokens=5"),  # a counter: only names ending in token
    ],
)
def test_target_edge_cases(target: str, expected: str) -> None:
    out, secrets = Redactor((), query=DEFAULT_REDACT_QUERY).target(target)
    assert TOKEN.sub("T", out) == expected
    assert bool(secrets) == (out != target)
