"""Response.body decodes within limits: a compression bomb costs the cap, not the bomb.

Bodies come from a real tracer and a loopback server; memory is measured with tracemalloc
(the decoded bytes are Python objects, so a bomb decoded in full shows in its peak).
"""

from __future__ import annotations

import gzip
import io
import json
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import urllib3
from support.server import ScriptedServer, response

import zltrace
from zltrace._read.decode import RATIO_FLOOR, DecodeLimits, decode_content

MiB = 1 << 20
BOMB_SIZE = 64 * MiB
BOMB = gzip.compress(b"\0" * BOMB_SIZE, compresslevel=9)


def _trace(tracer: zltrace.Tracer, body: bytes, encoding: str) -> Path:
    """One exchange whose response body is ``body`` as sent, Content-Encoding ``encoding``."""
    with ScriptedServer([response(200, body, [("Content-Encoding", encoding)])]) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port, retries=False))
        # The application does not decode (it would hold the bomb itself): the trace has it.
        assert pool.urlopen("GET", "/bomb", decode_content=False).data == body
        pool.close()
    assert tracer.close(timeout=10)
    return Path(tracer.path)


def _peak(fn: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.fixture
def bomb_trace(tracer: zltrace.Tracer) -> Path:
    """A trace holding one gzip bomb response (64 MiB of zeros in ~64 KiB)."""
    return _trace(tracer, BOMB, "gzip")


def test_a_bomb_past_the_size_cap_is_left_as_received(bomb_trace: Path) -> None:
    """Past max_decoded_bytes the body is the raw bytes and decode_note names the limit."""
    (ex,) = zltrace.read(bomb_trace, max_decoded_bytes=4 * MiB)
    assert ex.response is not None
    peak = _peak(lambda: ex.response.body)  # type: ignore[union-attr]
    assert ex.response.body == BOMB
    assert ex.response.decode_note is not None and "limit" in ex.response.decode_note
    assert peak < 3 * 4 * MiB  # the output buffer may grow to twice the cap; not 64 MiB


def test_reading_and_exporting_a_bomb_stays_within_the_cap(bomb_trace: Path) -> None:
    """read, stats, the report and both exports of a bomb allocate about the cap, no more."""

    def everything() -> None:
        exchanges = list(zltrace.read(bomb_trace, max_decoded_bytes=2 * MiB))
        zltrace.summarize(exchanges)
        zltrace.write_report(exchanges, io.StringIO())
        har = io.StringIO()
        zltrace.export_har(exchanges, har)
        zltrace.export_claude_trace(exchanges, io.StringIO())
        entry = json.loads(har.getvalue())["log"]["entries"][0]
        assert "limit" in entry["_zltrace"]["decode_note"]
        assert entry["response"]["content"]["size"] == len(BOMB)

    assert _peak(everything) < 16 * MiB  # the bomb decoded would be 64 MiB


def test_a_bomb_past_the_ratio_cap_is_left_as_received(tracer: zltrace.Tracer) -> None:
    """A body decoding to more than max_decode_ratio times its size (past the floor) stays raw."""
    plain = b"0123456789abcdef" * (2 * RATIO_FLOOR // 16)
    body = gzip.compress(plain)
    path = _trace(tracer, body, "gzip")
    (raw,) = zltrace.read(path, max_decode_ratio=10)
    assert raw.response is not None and raw.response.body == body
    assert "limit" in (raw.response.decode_note or "")
    (decoded,) = zltrace.read(path)
    assert decoded.response is not None and decoded.response.body == plain
    assert decoded.response.decode_note is None


def test_gzip_with_trailing_garbage_decodes_as_urllib3_gives_it(tracer: zltrace.Tracer) -> None:
    """Bytes after a whole gzip member are dropped, as urllib3 drops them for the app."""
    body = gzip.compress(b"hello, world") + b"\0\0 trailing garbage"
    with ScriptedServer([response(200, body, [("Content-Encoding", "gzip")])]) as srv:
        pool = tracer.wrap(urllib3.HTTPConnectionPool("127.0.0.1", srv.port, retries=False))
        app_got = pool.urlopen("GET", "/").data
        pool.close()
    assert tracer.close(timeout=10)
    (ex,) = zltrace.read(tracer.path)
    assert ex.response is not None and ex.response.raw_body == body
    assert ex.response.body == app_got == b"hello, world"
    assert ex.response.decode_note is None


def _codecs() -> Iterator[Any]:
    yield pytest.param("gzip", gzip.compress, id="gzip")
    yield pytest.param("deflate", zlib.compress, id="deflate")
    try:
        import brotli
    except ImportError:
        yield pytest.param("br", None, id="br", marks=pytest.mark.skip("brotli not installed"))
    else:
        yield pytest.param("br", brotli.compress, id="br")
    try:
        from backports import zstd
    except ImportError:
        try:
            from compression import zstd  # type: ignore[import-not-found,no-redef]
        except ImportError:
            zstd = None
    if zstd is None:
        yield pytest.param("zstd", None, id="zstd", marks=pytest.mark.skip("no zstd module"))
    else:
        yield pytest.param("zstd", zstd.compress, id="zstd")


@pytest.mark.parametrize(("coding", "compress"), list(_codecs()))
def test_every_coding_stops_at_the_cap(coding: str, compress: Callable[[bytes], bytes]) -> None:
    """gzip, deflate, br and zstd bombs stop at the cap; small bodies still decode."""
    bomb = compress(b"\0" * BOMB_SIZE)
    limits = DecodeLimits(max_bytes=MiB)
    result: list[tuple[bytes, str | None]] = []
    peak = _peak(lambda: result.append(decode_content(bomb, coding, limits)))
    body, note = result[0]
    assert body == bomb and note is not None and "limit" in note
    assert peak < 3 * MiB + 4 * len(bomb)  # the output may grow to twice the cap
    assert decode_content(compress(b"small body"), coding, limits) == (b"small body", None)


def test_nested_codings_share_the_cap() -> None:
    """A bomb inside a bomb (gzip, gzip) stops at the cap as well."""
    inner = gzip.compress(b"\0" * BOMB_SIZE)
    outer = gzip.compress(inner)
    body, note = decode_content(outer, "gzip, gzip", DecodeLimits(max_bytes=MiB))
    assert body == outer and note is not None and "limit" in note


def test_decode_limits_are_checked() -> None:
    """Limits below 1 (or not integers) are refused with a message naming the field."""
    for kwargs in ({"max_bytes": 0}, {"max_ratio": 0}, {"max_ratio": 1.5}):
        with pytest.raises(zltrace.ZltraceError, match=next(iter(kwargs))):
            DecodeLimits(**kwargs)
