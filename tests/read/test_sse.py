"""The event-stream parser: WHATWG interpretation rules, and the same events for any chunking."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.llm_fixtures import ALL, Stream

from zltrace import SSEEvent, SSEParser, ZltraceError, parse_sse


def events(data: bytes | Sequence[bytes]) -> list[SSEEvent]:
    """All events of ``data`` (whole, or the given chunks)."""
    return list(parse_sse([data] if isinstance(data, bytes) else data))


def ev(
    data: str, event: str = "message", id: str | None = None, retry: int | None = None
) -> SSEEvent:
    """An expected event."""
    return SSEEvent(event=event, data=data, id=id, retry=retry)


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets."""
    edges = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


# -- the interpretation rules ---------------------------------------------------------------


def test_whatwg_stock_example() -> None:
    """Data lines are joined with LF and the event is dispatched at the blank line."""
    assert events(b"data: YHOO\ndata: +2\ndata: 10\n\n") == [ev("YHOO\n+2\n10")]


def test_whatwg_id_and_comment_example() -> None:
    """Comments are skipped; an id carries over to later events until an empty id resets it."""
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\n"
        b"data:second event\nid\n\ndata:  third event\n\n"
    )
    assert events(stream) == [
        ev("first event", id="1"),
        ev("second event", id=""),
        ev(" third event", id=""),
    ]


def test_whatwg_empty_data_example() -> None:
    """A bare "data" line is a data line with an empty value; two of them make "\\n"."""
    assert events(b"data\n\ndata\ndata\n\n") == [ev(""), ev("\n")]


def test_one_leading_space_only_is_stripped() -> None:
    """Only one space after the colon is dropped; no colon-space at all works too."""
    assert events(b"data:test\n\ndata: test\n\ndata:  two\n\n") == [
        ev("test"),
        ev("test"),
        ev(" two"),
    ]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_line_endings(eol: bytes) -> None:
    """LF, CRLF and CR all end lines."""
    stream = eol.join([b"event: add", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert events(stream) == [ev("a\nb", event="add"), ev("c")]


def test_mixed_line_endings() -> None:
    """Line ends of all three kinds can follow one another in one stream."""
    assert events(b"data: a\r\ndata: b\rdata: c\n\r\n") == [ev("a\nb\nc")]


def test_cr_then_lf_across_chunks_is_one_line_end() -> None:
    """A CR ending one chunk and an LF starting the next are one CRLF, not a blank line."""
    assert events([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"]) == [ev("a\nb")]


def test_cr_at_chunk_end_ends_the_line_at_once() -> None:
    """The parser does not wait for the next chunk to act on a CR: the event is out already."""
    parser = SSEParser()
    assert parser.feed(b"data: x\r\r") == [ev("x")]
    assert parser.feed(b"\ndata: y\n\n") == [ev("y")]  # the LF is the second CR's other half


def test_lone_cr_chunk_followed_by_data() -> None:
    """A CR alone in its chunk, then a chunk not starting with LF, is a CR line end."""
    assert events([b"data: a", b"\r", b"\r", b"data: b\n\n"]) == [ev("a"), ev("b")]


def test_event_type_and_default() -> None:
    """The event field names the event; an empty one is "message", and it resets per event."""
    assert events(b"event: ping\ndata: 1\n\nevent:\ndata: 2\n\ndata: 3\n\n") == [
        ev("1", event="ping"),
        ev("2"),
        ev("3"),
    ]


def test_event_without_data_is_not_dispatched() -> None:
    """A block with an event name but no data line dispatches nothing (and the name resets)."""
    assert events(b"event: ghost\n\ndata: real\n\n") == [ev("real")]


def test_id_with_nul_is_ignored() -> None:
    """An id containing NUL leaves the last event id unchanged."""
    assert events(b"id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n") == [
        ev("a", id="7"),
        ev("b", id="7"),
    ]


def test_retry_only_ascii_digits() -> None:
    """retry counts when it is all ASCII digits; anything else (even other digits) is ignored."""
    stream = (
        b"retry: 3000\ndata: a\n\n"
        b"retry: 10a\ndata: b\n\n"
        + "retry: \u0661\u0662\ndata: c\n\n".encode()
        + b"retry:\ndata: d\n\n"
    )
    assert events(stream) == [ev("a", retry=3000), ev("b"), ev("c"), ev("d")]


def test_retry_belongs_to_its_block() -> None:
    """retry is reported on the event of the block it appeared in, not on later events."""
    assert events(b"retry: 5\ndata: a\n\ndata: b\n\n") == [ev("a", retry=5), ev("b")]


def test_unknown_fields_and_odd_names_ignored() -> None:
    """Unknown fields, a field name with a space, and case variants of names are ignored."""
    stream = b"foo: bar\nData: no\ndata : no\nevent\xc3\xa9: no\ndata: yes\n\n"
    assert events(stream) == [ev("yes")]


def test_colon_in_value_kept() -> None:
    """Only the first colon separates the name; the rest stays in the value."""
    assert events(b'data: {"a": "b:c"}\n\n') == [ev('{"a": "b:c"}')]


def test_leading_bom_stripped_once() -> None:
    """One leading UTF-8 BOM is dropped; a second one is part of the first field name."""
    assert events(b"\xef\xbb\xbfdata: a\n\n") == [ev("a")]
    assert events(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == [ev("b")]


def test_bom_split_across_chunks() -> None:
    """A BOM cut over three chunks is still recognised as the leading BOM."""
    assert events([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == [ev("a")]


def test_bom_not_at_start_is_kept() -> None:
    """A BOM later in the stream is data, not stripped."""
    assert events(b"data: \xef\xbb\xbfx\n\n") == [ev("\ufeffx")]


def test_invalid_utf8_replaced() -> None:
    """Bytes that are not UTF-8 become U+FFFD instead of failing."""
    assert events(b"data: a\xffb\xc3\n\n") == [ev("a\ufffdb\ufffd")]


def test_multibyte_character_split_across_chunks() -> None:
    """A character whose bytes arrive in different chunks decodes whole."""
    body = "data: 👋é\n\n".encode()
    assert events([body[:7], body[7:9], body[9:]]) == [ev("👋é")]


def test_unterminated_last_event_is_yielded() -> None:
    """Decision: a last event no blank line ended (a cut-off stream) is still yielded."""
    assert events(b"data: a\n\ndata: cut") == [ev("a"), ev("cut")]
    assert events(b"data: a\n\ndata: cut\n") == [ev("a"), ev("cut")]
    assert events(b"data: a\n\ndata:") == [ev("a"), ev("")]


def test_trailing_comment_or_field_without_data_yields_nothing() -> None:
    """At the end of the stream, a pending block without data dispatches nothing."""
    assert events(b"data: a\n\n: bye") == [ev("a")]
    assert events(b"data: a\n\nevent: x\nid: 3") == [ev("a")]


def test_empty_stream() -> None:
    """No bytes, no events."""
    assert events(b"") == []
    assert events([]) == []


def test_close_is_idempotent_and_feed_after_close_raises() -> None:
    """close() twice gives the pending events once; feeding a closed parser is an error."""
    parser = SSEParser()
    assert parser.feed(b"data: a") == []
    assert parser.close() == [ev("a")]
    assert parser.close() == []
    with pytest.raises(ValueError, match="after close"):
        parser.feed(b"data: b\n\n")


def test_feed_after_close_is_a_zltrace_error() -> None:
    """Feeding a closed parser raises a ZltraceError that is also a ValueError."""
    parser = SSEParser()
    parser.close()
    with pytest.raises(ZltraceError) as caught:
        parser.feed(b"data: b\n\n")
    assert isinstance(caught.value, ValueError)


def test_parse_sse_accepts_bytes_like_and_iterables() -> None:
    """parse_sse takes bytes, bytearray, memoryview, or any iterable of byte chunks."""
    body = b"data: a\n\n"
    for whole in (body, bytearray(body), memoryview(body)):
        assert list(parse_sse(whole)) == [ev("a")]
    assert list(parse_sse(iter([b"da", b"ta: a\n", b"\n"]))) == [ev("a")]


def test_parse_sse_is_lazy() -> None:
    """Events come out as their chunks are consumed, before the iterable ends."""

    def chunks() -> Iterator[bytes]:
        yield b"data: 1\n\n"
        raise AssertionError("read past the first event")

    assert next(parse_sse(chunks())) == ev("1")


def test_long_line_in_many_small_chunks() -> None:
    """A 200 KB data line fed in 1 KB pieces comes out whole."""
    line = b"x" * 200_000
    body = b"data: " + line + b"\n\n"
    pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    assert events(pieces) == [ev(line.decode())]


def test_sse_event_defaults() -> None:
    """SSEEvent defaults: event "message", empty data, no id, no retry."""
    assert SSEEvent() == SSEEvent("message", "", None, None)


# -- any chunking gives the same events ------------------------------------------------------


@pytest.mark.parametrize("stream", ALL, ids=[s.name for s in ALL])
def test_fixture_every_two_way_split(stream: Stream) -> None:
    """Each fixture cut at every single byte boundary parses to the same events as whole."""
    body = stream.body
    whole = events(body)
    assert len(whole) == stream.dispatched
    for i in range(1, len(body)):
        parser = SSEParser()
        got = parser.feed(body[:i]) + parser.feed(body[i:]) + parser.close()
        assert got == whole, i


@pytest.mark.parametrize("stream", ALL, ids=[s.name for s in ALL])
def test_fixture_byte_by_byte(stream: Stream) -> None:
    """Each fixture fed one byte at a time parses to the same events as whole."""
    body = stream.body
    assert events([body[i : i + 1] for i in range(len(body))]) == events(body)


@pytest.mark.parametrize("stream", ALL, ids=[s.name for s in ALL])
@given(data=st.data())
@settings(max_examples=25, deadline=None)
def test_fixture_random_splits(stream: Stream, data: st.DataObject) -> None:
    """Each fixture cut at any set of offsets parses to the same events as whole."""
    body = stream.body
    cuts = data.draw(st.lists(st.integers(1, len(body) - 1), max_size=40))
    assert events(split_at(body, cuts)) == events(body)


# An independent whole-text reading of the rules, to check the incremental parser against.
def reference(body: bytes) -> list[SSEEvent]:
    """The events of ``body``, by the WHATWG rules read plainly (plus the end-of-stream choice)."""
    text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    out: list[SSEEvent] = []
    data: list[str] = []
    event, last_id, retry = "", None, None
    for line in [*re.split(r"\r\n|\r|\n", text), ""]:
        if line == "":
            if data:
                out.append(SSEEvent(event or "message", "\n".join(data), last_id, retry))
            data, event, retry = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return out


_LINES = st.one_of(
    st.sampled_from(["", "", "data", "data:", ": comment", "event: e", "id: 1", "retry: 9", "id"]),
    st.builds(lambda v: "data: " + v, st.text(max_size=8)),
    st.builds(
        lambda n, v: f"{n}:{v}",
        st.sampled_from(["data", "event", "id", "retry", "x"]),
        st.text(max_size=6),
    ),
)
_EOLS = st.sampled_from(["\n", "\r\n", "\r"])


@given(
    lines=st.lists(st.tuples(_LINES, _EOLS), max_size=30),
    bom=st.booleans(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
@settings(max_examples=300, deadline=None)
def test_random_streams_match_reference_for_any_split(
    lines: list[tuple[str, str]], bom: bool, cuts: list[int]
) -> None:
    """Random streams, cut anywhere, give the events a plain whole-text reading gives."""
    body = ("\ufeff" if bom else "").encode() + "".join(a + b for a, b in lines).encode()
    want = reference(body)
    assert events(body) == want
    assert events(split_at(body, [c % (len(body) + 1) for c in cuts])) == want


@given(body=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=10))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_fail_and_split_invariant(body: bytes, cuts: list[int]) -> None:
    """Any bytes parse without error, to the same events however they are cut."""
    want = events(body)
    assert want == reference(body)
    assert events(split_at(body, [c % (len(body) + 1) for c in cuts])) == want
