"""Byte-exact capture on every way an application can read a urllib3 response body.

Each case: a loopback server sends exact bytes (Content-Length, chunked with varied chunk
sizes / extensions / trailers, or close-delimited), the application consumes the body one
way, and the trace must hold exactly one exchange whose ``raw_body`` is the body the server
sent (de-chunked, still content-encoded), with outcome ``complete`` -- while the application
got the same bytes as it does from an untraced pool.
"""

from __future__ import annotations

import io
import json
import random
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.server import (
    Routes,
    ScriptedServer,
    Step,
    close,
    gzip_bytes,
    pause,
    response,
    send,
)
from support.trace import records

import zltrace

HAS_READ1 = hasattr(urllib3.response.HTTPResponse, "read1")
HAS_JSON = hasattr(urllib3.response.HTTPResponse, "json")
needs_read1 = pytest.mark.skipif(
    not HAS_READ1, reason=f"urllib3 {urllib3.__version__} has no HTTPResponse.read1()"
)
needs_json = pytest.mark.skipif(
    not HAS_JSON, reason=f"urllib3 {urllib3.__version__} has no HTTPResponse.json()"
)
# urllib3 1.x read(amt) with decode_content returns more than amt bytes, so its readinto()
# overflows the memoryview io.BufferedReader hands it (ValueError, untraced too).
URLLIB3_V1 = urllib3.__version__.startswith("1.")
v1_readinto_overflows = pytest.mark.skipif(
    URLLIB3_V1,
    reason=f"urllib3 {urllib3.__version__}: decoded readinto() overflows io.BufferedReader",
)

# -- one loopback server for the module; each case registers its own route ----------------

_routes = Routes("/case/")
route = _routes.route


@pytest.fixture(scope="module")
def srv() -> Iterator[ScriptedServer]:
    """A keep-alive scripted server answering each path with the steps registered for it."""
    with _routes.serve() as s:
        yield s


def _pool(srv: ScriptedServer) -> urllib3.HTTPConnectionPool:
    return urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, timeout=30, maxsize=2)


# -- wire builders ----------------------------------------------------------------------------


def _head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _pieces(data: bytes, parts: int) -> list[bytes]:
    """``data`` cut into at most ``parts`` sends at fixed, uneven positions."""
    if not data:
        return []
    cuts = sorted({len(data) * k // (parts + 1) + k for k in range(1, parts)} - {0})
    cuts = [c for c in cuts if 0 < c < len(data)]
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


def _sends(chunks: list[bytes]) -> list[Step]:
    steps: list[Step] = []
    for c in chunks:
        if steps:
            steps.append(pause(0.001))
        steps.append(send(c))
    return steps


def _split(body: bytes, sizes: Sequence[int]) -> list[bytes]:
    out, pos, i = [], 0, 0
    while pos < len(body):
        n = sizes[i % len(sizes)]
        out.append(body[pos : pos + n])
        pos += n
        i += 1
    return out


def chunked_wire(
    body: bytes,
    sizes: Sequence[int],
    *,
    ext: bool = False,
    trailers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """The chunked framing of ``body`` cut into ``sizes`` (cycled), optionally decorated."""
    frames = []
    for i, piece in enumerate(_split(body, sizes)):
        extension = b';ext-%d="v;x"' % i if ext else b""
        frames.append(b"%x%s\r\n%s\r\n" % (len(piece), extension, piece))
    last = b"0" + (b";last=1" if ext else b"") + b"\r\n"
    last += b"".join(b"%s: %s\r\n" % t for t in trailers) + b"\r\n"
    return b"".join(frames) + last


# Framings: name -> (recorded framing, steps builder(body, headers)).
def _length(body: bytes, headers: Sequence[tuple[str, str]]) -> list[Step]:
    head = _head(200, [*headers, ("Content-Length", str(len(body)))])
    return _sends([head, *_pieces(body, 3)])


def _close(body: bytes, headers: Sequence[tuple[str, str]]) -> list[Step]:
    head = _head(200, [*headers, ("Connection", "close")])
    return [*_sends([head, *_pieces(body, 3)]), close()]


def _chunked(
    sizes: Sequence[int], *, ext: bool = False, trailers: Sequence[tuple[bytes, bytes]] = ()
) -> Callable[[bytes, Sequence[tuple[str, str]]], list[Step]]:
    def build(body: bytes, headers: Sequence[tuple[str, str]]) -> list[Step]:
        hdrs = [*headers, ("Transfer-Encoding", "chunked")]
        if trailers:
            hdrs.append(("Trailer", ", ".join(k.decode() for k, _ in trailers)))
        wire = chunked_wire(body, sizes, ext=ext, trailers=trailers)
        return _sends([_head(200, hdrs), *_pieces(wire, 4)])

    return build


FRAMINGS: dict[str, tuple[str, Callable[[bytes, Sequence[tuple[str, str]]], list[Step]]]] = {
    "length": ("length", _length),
    "close": ("close", _close),
    "chunked": ("chunked", _chunked([7, 1000, 3, 64])),
    "chunked-1byte": ("chunked", _chunked([1])),
    "chunked-ext-trailers": (
        "chunked",
        _chunked([100, 1], ext=True, trailers=[(b"X-Checksum", b"abc"), (b"X-More", b"1")]),
    ),
}

_rng = random.Random(20240601)
BODIES: dict[str, bytes] = {
    "empty": b"",
    "one-byte": b"\x00",
    "text": "".join(f"line {i}: réponse ✓ 😀 zltrace\n" for i in range(40)).encode(),
    "binary-256": bytes(range(256)) * 3,
    "64KiB": bytes(_rng.getrandbits(8) for _ in range(64 * 1024)),
}


# -- consumers: the read paths -------------------------------------------------------------


def _until_closed(r: Any, read: Callable[[], bytes]) -> bytes:
    """Call ``read`` until it returns nothing at the end of the body.

    urllib3 1.26 may return b"" from read(amt) while a decoder has no output yet, so an
    empty read only ends the loop once the response is closed.
    """
    out = bytearray()
    for _ in range(1_000_000):
        data = read()
        out += data
        if not data and r.closed:
            return bytes(out)
    raise AssertionError("read loop did not end")


def c_preload(r: Any, dc: bool) -> bytes:
    return bytes(r.data)


def c_data(r: Any, dc: bool) -> bytes:
    return bytes(r.data)


def c_read(r: Any, dc: bool) -> bytes:
    return bytes(r.read(decode_content=dc))


def c_read_amt(r: Any, dc: bool) -> bytes:
    return _until_closed(r, lambda: r.read(7, decode_content=dc))


def c_read1(r: Any, dc: bool) -> bytes:
    return _until_closed(r, lambda: r.read1(50, decode_content=dc))


def c_readinto(r: Any, dc: bool) -> bytes:
    buf = bytearray(33)

    def one() -> bytes:
        n = r.readinto(buf)
        return bytes(buf[:n])

    return _until_closed(r, one)


def c_stream(r: Any, dc: bool) -> bytes:
    return b"".join(r.stream(13, decode_content=dc))


def c_read_chunked(r: Any, dc: bool) -> bytes:
    return b"".join(r.read_chunked(11, decode_content=dc))


def c_lines(r: Any, dc: bool) -> bytes:
    lines = list(r)
    assert all(line.endswith(b"\n") for line in lines[:-1])
    return b"".join(lines)


def c_drain(r: Any, dc: bool) -> Optional[bytes]:
    r.drain_conn()
    return None  # the application got nothing


def c_release_after_read(r: Any, dc: bool) -> bytes:
    data = bytes(r.read(decode_content=dc))
    r.release_conn()
    return data


def c_buffered_reader(r: Any, dc: bool) -> bytes:
    r.auto_close = False  # what urllib3 documents for io wrappers
    reader = io.BufferedReader(r, 64)
    out = bytearray()
    while True:
        data = reader.read(100)
        if not data:
            break
        out += data
    reader.close()
    return bytes(out)


# name -> (preload_content, consumer, always decodes, chunked only, marks)
CONSUMERS: dict[str, tuple[bool, Callable[[Any, bool], Optional[bytes]], bool, bool, list[Any]]] = {
    "preload": (True, c_preload, False, False, []),
    "data": (False, c_data, False, False, []),
    "read": (False, c_read, False, False, []),
    "read_amt": (False, c_read_amt, False, False, []),
    "read1": (False, c_read1, False, False, [needs_read1]),
    "readinto": (False, c_readinto, False, False, []),
    "stream": (False, c_stream, False, False, []),
    "read_chunked": (False, c_read_chunked, False, True, []),
    "lines": (False, c_lines, True, False, []),
    "drain_conn": (False, c_drain, False, False, []),
    "release_after_read": (False, c_release_after_read, False, False, []),
    "buffered_reader": (False, c_buffered_reader, False, False, []),
}


def fetch(
    pool: urllib3.HTTPConnectionPool, path: str, consumer: str, dc: bool = True, method: str = "GET"
) -> Optional[bytes]:
    """Request ``path`` and consume the body the way ``consumer`` names; what the app got."""
    preload, fn, _, _, _ = CONSUMERS[consumer]
    r = pool.request(method, path, preload_content=preload, decode_content=dc)
    try:
        return fn(r, dc)
    finally:
        r.release_conn()


def check_exchange(
    ex: zltrace.Exchange,
    srv: ScriptedServer,
    path: str,
    wire_body: bytes,
    framing: str,
    *,
    method: str = "GET",
    status: int = 200,
) -> None:
    """The assertions every read path shares."""
    assert ex.outcome == "complete", (ex.outcome, ex.error)
    assert ex.error is None
    assert ex.request.method == method
    assert ex.request.url == f"{srv.url}{path}"
    assert ex.response is not None
    assert ex.response.status == status
    assert ex.response.framing == framing
    assert len(ex.response.raw_body) == len(wire_body)
    assert ex.response.raw_body == wire_body
    offsets = [end for end, _ in ex.response.reads]
    times = [t for _, t in ex.response.reads]
    assert all(a < b for a, b in zip(offsets, offsets[1:])), offsets
    assert all(a <= b for a, b in zip(times, times[1:])), times
    if wire_body:
        assert offsets and offsets[0] > 0 and offsets[-1] == len(wire_body)
    else:
        assert offsets == []


def one_exchange(tracer: zltrace.Tracer) -> zltrace.Exchange:
    exs = records(tracer)
    assert len(exs) == 1, [(e.request.url, e.outcome) for e in exs]
    return exs[0]


# -- the matrix ------------------------------------------------------------------------------


def _matrix() -> Iterator[Any]:
    for body_name, body in BODIES.items():
        for framing_name in FRAMINGS:
            if framing_name == "chunked-1byte" and len(body) > 1024:
                continue  # 65536 one-byte chunks add nothing over the 768-byte case
            for consumer, (_, _, _, chunked_only, marks) in CONSUMERS.items():
                if chunked_only and not framing_name.startswith("chunked"):
                    continue  # read_chunked() raises ResponseNotChunked by design
                yield pytest.param(
                    body_name,
                    framing_name,
                    consumer,
                    marks=marks,
                    id=f"{body_name}-{framing_name}-{consumer}",
                )


@pytest.mark.parametrize(("body_name", "framing_name", "consumer"), list(_matrix()))
def test_read_path_captures_exact_body(
    srv: ScriptedServer,
    any_tracer: zltrace.Tracer,
    body_name: str,
    framing_name: str,
    consumer: str,
) -> None:
    """Every read path x framing x body: app bytes unchanged, raw_body == sent body, complete."""
    body = BODIES[body_name]
    framing, build = FRAMINGS[framing_name]
    path = route(build(body, [("Content-Type", "application/octet-stream")]))

    plain = _pool(srv)
    traced = zltrace.wrap(_pool(srv), tracer=any_tracer)
    try:
        untraced_got = fetch(plain, path, consumer)
        got = fetch(traced, path, consumer)
    finally:
        plain.close()
        traced.close()

    expected = None if consumer == "drain_conn" else body
    assert untraced_got == expected
    assert got == expected
    check_exchange(one_exchange(any_tracer), srv, path, body, framing)


# -- content encoding ------------------------------------------------------------------------

GZ_PLAIN = "".join(f"{i:05d} gzip me, répète ✓\n" for i in range(300)).encode()
GZ_WIRE = gzip_bytes(GZ_PLAIN)


def _gzip_matrix() -> Iterator[Any]:
    for framing_name in ("length", "chunked", "close"):
        for consumer, (_, _, _, chunked_only, marks) in CONSUMERS.items():
            if chunked_only and framing_name != "chunked":
                continue
            for dc in (True, False):
                if dc and consumer == "buffered_reader":
                    marks = [*marks, v1_readinto_overflows]
                yield pytest.param(
                    framing_name,
                    consumer,
                    dc,
                    marks=marks,
                    id=f"{framing_name}-{consumer}-decode={dc}",
                )


@pytest.mark.parametrize(("framing_name", "consumer", "dc"), list(_gzip_matrix()))
def test_gzip_body_raw_and_decoded(
    srv: ScriptedServer, tracer: zltrace.Tracer, framing_name: str, consumer: str, dc: bool
) -> None:
    """gzip response: app gets decoded/raw per decode_content; trace keeps wire bytes + body."""
    framing, build = FRAMINGS[framing_name]
    path = route(build(GZ_WIRE, [("Content-Encoding", "gzip"), ("Content-Type", "text/plain")]))
    always_decodes = CONSUMERS[consumer][2]

    plain = _pool(srv)
    traced = zltrace.wrap(_pool(srv), tracer=tracer)
    try:
        untraced_got = fetch(plain, path, consumer, dc=dc)
        got = fetch(traced, path, consumer, dc=dc)
    finally:
        plain.close()
        traced.close()

    expected = None if consumer == "drain_conn" else (GZ_PLAIN if dc or always_decodes else GZ_WIRE)
    assert untraced_got == expected
    assert got == expected
    ex = one_exchange(tracer)
    check_exchange(ex, srv, path, GZ_WIRE, framing)
    assert ex.response is not None
    assert ex.response.header("content-encoding") == "gzip"
    assert ex.response.body == GZ_PLAIN
    assert ex.response.decode_note is None


@pytest.mark.parametrize("framing_name", ["length", "chunked", "close"])
def test_gzip_in_standard_mode(
    srv: ScriptedServer, std_tracer: zltrace.Tracer, framing_name: str
) -> None:
    """Standard mode keeps gzip wire bytes in raw_body and decodes them in body."""
    framing, build = FRAMINGS[framing_name]
    path = route(build(GZ_WIRE, [("Content-Encoding", "gzip")]))
    pool = zltrace.wrap(_pool(srv), tracer=std_tracer)
    try:
        assert fetch(pool, path, "stream", dc=True) == GZ_PLAIN
    finally:
        pool.close()
    ex = one_exchange(std_tracer)
    check_exchange(ex, srv, path, GZ_WIRE, framing)
    assert ex.response is not None and ex.response.body == GZ_PLAIN


# -- json() -----------------------------------------------------------------------------------

JSON_DOC = {"message": "héllo ✓ 😀", "items": list(range(50)), "nested": {"ok": True}}
JSON_BODY = json.dumps(JSON_DOC, ensure_ascii=False).encode()


@needs_json
@pytest.mark.parametrize("framing_name", ["length", "chunked", "chunked-1byte", "close"])
def test_json_read_path(srv: ScriptedServer, any_tracer: zltrace.Tracer, framing_name: str) -> None:
    """response.json() on every framing: same object as untraced, exact body captured."""
    framing, build = FRAMINGS[framing_name]
    path = route(build(JSON_BODY, [("Content-Type", "application/json")]))
    plain = _pool(srv)
    traced = zltrace.wrap(_pool(srv), tracer=any_tracer)
    try:
        untraced = plain.request("GET", path).json()
        r = traced.request("GET", path, preload_content=False)
        got = r.json()
        r.release_conn()
    finally:
        plain.close()
        traced.close()
    assert untraced == JSON_DOC
    assert got == JSON_DOC
    check_exchange(one_exchange(any_tracer), srv, path, JSON_BODY, framing)


# -- responses without a body ----------------------------------------------------------------

NO_BODY_CASES = {
    "HEAD-content-length": ("HEAD", 200, [("Content-Length", "1234")]),
    "HEAD-no-length": ("HEAD", 200, []),
    "HEAD-chunked": ("HEAD", 200, [("Transfer-Encoding", "chunked")]),
    "204": ("GET", 204, []),
    "304-content-length": ("GET", 304, [("Content-Length", "99"), ("ETag", '"x"')]),
    "200-content-length-0": ("GET", 200, [("Content-Length", "0")]),
}


@pytest.mark.parametrize("consumer", ["preload", "stream", "read", "drain_conn"])
@pytest.mark.parametrize("case", list(NO_BODY_CASES))
def test_no_body_response_is_complete(
    srv: ScriptedServer, any_tracer: zltrace.Tracer, case: str, consumer: str
) -> None:
    """HEAD/204/304/empty responses: app gets b"", one exchange, complete, empty raw_body."""
    method, status, headers = NO_BODY_CASES[case]
    path = route([send(_head(status, headers))])
    pool = zltrace.wrap(_pool(srv), tracer=any_tracer)
    try:
        got = fetch(pool, path, consumer, method=method)
        # The connection is reusable afterwards: nothing was left unread on it.
        again = pool.request(method, path)
        assert again.status == status and again.data == b""
    finally:
        pool.close()
    assert got == (None if consumer == "drain_conn" else b"")
    exs = records(any_tracer)
    assert len(exs) == 2, [(e.request.url, e.outcome) for e in exs]
    for ex in exs:
        assert ex.outcome == "complete", (case, ex.outcome, ex.error)
        assert ex.error is None
        assert ex.request.method == method
        assert ex.request.url == f"{srv.url}{path}"
        assert ex.response is not None
        assert ex.response.status == status
        assert ex.response.raw_body == b""
        assert ex.response.reads == []


@pytest.mark.parametrize("case", [c for c in NO_BODY_CASES if c != "200-content-length-0"])
def test_no_body_response_framing_is_none(
    srv: ScriptedServer, tracer: zltrace.Tracer, case: str
) -> None:
    """A response that cannot have a body (HEAD, 204, 304) is recorded with framing "none"."""
    method, status, headers = NO_BODY_CASES[case]
    path = route([send(_head(status, headers))])
    pool = zltrace.wrap(_pool(srv), tracer=tracer)
    try:
        assert pool.request(method, path).data == b""
    finally:
        pool.close()
    ex = one_exchange(tracer)
    assert ex.response is not None
    assert ex.response.framing == "none"


def test_empty_length_response_framing_is_length(
    srv: ScriptedServer, tracer: zltrace.Tracer
) -> None:
    """A 200 with Content-Length: 0 is a body delimited by length (framing "length")."""
    path = route([send(_head(200, [("Content-Length", "0")]))])
    pool = zltrace.wrap(_pool(srv), tracer=tracer)
    try:
        assert pool.request("GET", path).data == b""
    finally:
        pool.close()
    check_exchange(one_exchange(tracer), srv, path, b"", "length")


# -- UTF-8 split across chunks ---------------------------------------------------------------

UTF8_TEXT = "aé€😀 " * 200 + "✓"


@pytest.mark.parametrize(
    "sizes", [[1], [2], [3], [5, 1, 2], [4093]], ids=lambda s: "sizes=" + ",".join(map(str, s))
)
@pytest.mark.parametrize("consumer", ["preload", "stream", "read_chunked", "lines"])
def test_utf8_split_across_chunks_comes_back_whole(
    srv: ScriptedServer, any_tracer: zltrace.Tracer, sizes: list[int], consumer: str
) -> None:
    """Multi-byte UTF-8 characters cut by chunk boundaries are stored and read back whole."""
    data = UTF8_TEXT.encode()
    path = route(_chunked(sizes)(data, [("Content-Type", "text/plain; charset=utf-8")]))
    pool = zltrace.wrap(_pool(srv), tracer=any_tracer)
    try:
        assert fetch(pool, path, consumer) == data
    finally:
        pool.close()
    ex = one_exchange(any_tracer)
    check_exchange(ex, srv, path, data, "chunked")
    assert ex.response is not None
    assert ex.response.raw_body.decode("utf-8") == UTF8_TEXT


# -- a large body ------------------------------------------------------------------------------


def test_20MB_body_streamed(srv: ScriptedServer, tracer: zltrace.Tracer) -> None:
    """A 20 MB Content-Length body read by stream() is captured byte for byte."""
    big = random.Random(99).getrandbits(8 * 20 * 1024 * 1024).to_bytes(20 * 1024 * 1024, "little")
    path = route([send(_head(200, [("Content-Length", str(len(big)))]) + big)])
    pool = zltrace.wrap(_pool(srv), tracer=tracer)
    try:
        r = pool.request("GET", path, preload_content=False)
        got = b"".join(r.stream(256 * 1024))
        r.release_conn()
    finally:
        pool.close()
    assert got == big
    ex = one_exchange(tracer)
    check_exchange(ex, srv, path, big, "length")
    assert ex.response is not None
    assert len(ex.response.reads) >= 20 * 4  # one arrival per 256 KiB read at least


# -- keep-alive: several read paths in a row on one connection --------------------------------


def test_sequential_read_paths_on_one_connection(
    srv: ScriptedServer, any_tracer: zltrace.Tracer
) -> None:
    """Consecutive requests on one kept-alive connection each become one complete exchange."""
    cases = []
    for i, (consumer, framing_name) in enumerate(
        [
            ("read", "length"),
            ("stream", "chunked"),
            ("read_amt", "chunked-ext-trailers"),
            ("readinto", "length"),
            ("lines", "chunked"),
            ("preload", "length"),
        ]
    ):
        body = b"body %d\n" % i * (i + 1)
        framing, build = FRAMINGS[framing_name]
        cases.append((route(build(body, [])), consumer, body, framing))
    conns_before = srv.connections
    pool = zltrace.wrap(
        urllib3.HTTPConnectionPool(srv.host, srv.port, retries=False, maxsize=1, timeout=30),
        tracer=any_tracer,
    )
    try:
        for path, consumer, body, _ in cases:
            assert fetch(pool, path, consumer) == body
    finally:
        pool.close()
    assert srv.connections - conns_before == 1
    exs = records(any_tracer)
    assert len(exs) == len(cases)
    by_url = {ex.request.url: ex for ex in exs}
    for path, _, body, framing in cases:
        check_exchange(by_url[f"{srv.url}{path}"], srv, path, body, framing)


# -- property: random bodies and random splits ------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(min_size=0, max_size=5000),
    sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=400), min_size=0, max_size=8),
    zero_latency=st.booleans(),
)
def test_property_random_body_and_splits(
    srv: ScriptedServer, body: bytes, sizes: list[int], cuts: list[int], zero_latency: bool
) -> None:
    """Random bytes, random chunk sizes and send splits: raw_body == body (chunked and length)."""
    wire_chunked = chunked_wire(body, sizes)

    def split_sends(data: bytes) -> list[bytes]:
        out, pos = [], 0
        for c in cuts:
            if pos >= len(data):
                break
            out.append(data[pos : pos + c])
            pos += c
        if pos < len(data):
            out.append(data[pos:])
        return out

    chunked_path = route(
        [send(_head(200, [("Transfer-Encoding", "chunked")]))]
        + [send(p) for p in split_sends(wire_chunked)]
    )
    length_path = route(
        [send(_head(200, [("Content-Length", str(len(body)))]))]
        + [send(p) for p in split_sends(body)]
    )
    with tempfile.TemporaryDirectory() as d:
        tr = zltrace.Tracer(zltrace.Config(dir=d, flush_ms=10, zero_latency=zero_latency))
        try:
            pool = zltrace.wrap(_pool(srv), tracer=tr)
            try:
                assert fetch(pool, chunked_path, "stream") == body
                assert fetch(pool, length_path, "read_amt") == body
            finally:
                pool.close()
            exs = records(tr)
        finally:
            tr.close(timeout=10)
    assert len(exs) == 2
    by_url = {ex.request.url: ex for ex in exs}
    check_exchange(by_url[srv.url + chunked_path], srv, chunked_path, body, "chunked")
    check_exchange(by_url[srv.url + length_path], srv, length_path, body, "length")


def test_100_mb_body_streamed_is_byte_exact(tracer: zltrace.Tracer) -> None:
    """A 100 MB body read with stream() is recorded byte-exact (checked by SHA-256)."""
    import hashlib

    body = bytes(range(256)) * (100 * 1024 * 1024 // 256)
    with ScriptedServer([response(200, body)]) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port))
        r = pool.urlopen("GET", "/huge", preload_content=False)
        got = hashlib.sha256()
        n = 0
        for chunk in r.stream(1 << 20):
            got.update(chunk)
            n += len(chunk)
        r.release_conn()
        pool.close()
    assert n == len(body)
    (ex,) = records(tracer)
    assert ex.outcome == "complete"
    assert ex.response is not None
    assert hashlib.sha256(ex.response.raw_body).digest() == got.digest()
    assert got.digest() == hashlib.sha256(body).digest()
